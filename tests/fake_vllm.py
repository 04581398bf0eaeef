"""A stand-in for ``python -m vllm.entrypoints.openai.api_server``: vLLM needs a
CUDA GPU and is not installed here. It takes vLLM's command line and serves a
real OpenAI-compatible API on loopback (llmkit's own llama.cpp server on the
model it is given, with /health, /v1, /tokenize as vLLM has them), so the vLLM
engine's supervision runs end to end over a real socket.

The environment steers it:
    FAKE_VLLM_DIR    each start appends {argv, pid, CUDA_VISIBLE_DEVICES} to
                     DIR/starts.jsonl; it dies as vLLM does on a CUDA error when
                     the file DIR/crash appears (and removes it)
    FAKE_VLLM_DELAY  seconds to wait before serving (a model that loads slowly)
    FAKE_VLLM_FAIL   print this as an error and exit 1 at once (a load that fails)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path


def _crash_when_told(directory: Path) -> None:
    marker = directory / "crash"
    while True:
        if marker.exists():
            marker.unlink()
            print(
                "RuntimeError: CUDA error: an illegal memory access was encountered (stand-in)",
                flush=True,
            )
            os._exit(1)
        time.sleep(0.1)


def main() -> None:
    p = argparse.ArgumentParser(prog="vllm-standin")
    p.add_argument("--model", required=True)
    p.add_argument("--served-model-name", nargs="+")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-model-len", type=int)
    for flag in (
        "--dtype",
        "--tensor-parallel-size",
        "--pipeline-parallel-size",
        "--gpu-memory-utilization",
        "--distributed-executor-backend",
    ):
        p.add_argument(flag)
    p.add_argument("--enforce-eager", action="store_true")
    args, _unknown = p.parse_known_args()  # vLLM has hundreds more; --vllm-arg passes them

    directory = Path(os.environ.get("FAKE_VLLM_DIR", "."))
    with (directory / "starts.jsonl").open("a") as f:
        record = {
            "argv": sys.argv,
            "pid": os.getpid(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }
        f.write(json.dumps(record) + "\n")
    print(f"INFO stand-in vLLM for {args.model}", flush=True)
    if os.environ.get("FAKE_VLLM_FAIL"):
        print(f"ValueError: {os.environ['FAKE_VLLM_FAIL']}", flush=True)
        sys.exit(1)
    time.sleep(float(os.environ.get("FAKE_VLLM_DELAY", "0")))
    threading.Thread(target=_crash_when_told, args=(directory,), daemon=True).start()

    from llmkit.config.settings import ServeSettings
    from llmkit.engines.spec import load_specs
    from llmkit.env import Environment
    from llmkit.serving.server import serve

    # Only the flags count (an LLMKIT_ENGINE=vllm here would start itself again), and
    # it records its address apart from the llmkit that started it.
    for key in [k for k in os.environ if k.startswith("LLMKIT_")]:
        del os.environ[key]
    os.environ["LLMKIT_HOME"] = str(directory / "home")
    settings = ServeSettings(
        model=[args.model],
        served_model_name=args.served_model_name or [args.model],
        host=args.host,
        port=args.port,
        log_level="warning",
        options={"max_model_len": args.max_model_len, "parallel": 2},
    )
    serve(settings, load_specs(), Environment.read())


if __name__ == "__main__":
    main()
