"""llama.cpp's own C++ `llama-server`, built from the source llmkit already pins.

The peer for bench/prefix.py: the llama.cpp vendored in the llama-cpp-python sdist that
pyproject.toml pins, so both sides run the same kernels. Built once per CPU with the flags
scripts/bootstrap.sh uses (no AMX: llama.cpp #20824), Release, only the server target, and
cached under ~/.cache/llmkit/llama-server-<version>-<cpu fingerprint>/bin/llama-server.

    python bench/llama_server.py build          # prints the binary's path
    python bench/llama_server.py serve MODEL.gguf --port 8090 -- --parallel 4
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
FLAGS = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
CMAKE_OPTIONS = [
    "-DCMAKE_BUILD_TYPE=Release",
    f"-DCMAKE_C_FLAGS={FLAGS}",
    f"-DCMAKE_CXX_FLAGS={FLAGS}",
    # One self-contained binary that can be moved into the cache.
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_SERVER=ON",
    # The web UI would be fetched from a hub at configure time; the API needs none of it.
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_CURL=OFF",
]


class BuildError(RuntimeError):
    """The server could not be built; the message says what to install or look at."""


def pinned_version() -> str:
    text = (ROOT / "pyproject.toml").read_text()
    found = re.search(r'"llama-cpp-python==([0-9.]+)"', text)
    if not found:
        raise BuildError("pyproject.toml pins no llama-cpp-python==VERSION")
    return found.group(1)


def cpu_fingerprint() -> str:
    """A key for what the binary fits: this CPU's feature flags and the compile flags."""
    cpu = os.uname().machine
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith(("flags", "Features")):
                cpu = line.strip()
                break
    return hashlib.sha256(f"{cpu}\n{' '.join(CMAKE_OPTIONS)}".encode()).hexdigest()[:16]


def cache_dir(version: str | None = None) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "llmkit" / f"llama-server-{version or pinned_version()}-{cpu_fingerprint()}"


def _cmake() -> str:
    # pip's cmake lands next to the interpreter; a system one will do too.
    local = Path(sys.executable).parent / "cmake"
    found = str(local) if local.exists() else shutil.which("cmake")
    if not found:
        raise BuildError(
            "cmake not found: `pip install cmake` (or `pip install -e .[bench]`) "
            "or install it with your system's package manager"
        )
    return found


def _check_compilers() -> None:
    for names, what in ((("cc", "gcc", "clang"), "C"), (("c++", "g++", "clang++"), "C++")):
        if not any(shutil.which(n) for n in names):
            raise BuildError(
                f"no {what} compiler found ({', '.join(names)}): install one, e.g. "
                "`apt-get install build-essential` or Xcode's command line tools"
            )


def _run(cmd: list[str], progress: Callable[[str], None], log: Path) -> None:
    """Runs a build step at the lowest priority, showing its lines and keeping them in `log`."""
    nice = ["nice", "-n", "19"] if shutil.which("nice") else []
    with open(log, "a") as out:
        proc = subprocess.Popen(
            nice + cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            if line.startswith("[") or "Error" in line or "error:" in line:
                progress(line.rstrip())
        if proc.wait():
            raise BuildError(
                f"`{' '.join(cmd[:3])} ...` failed (exit {proc.returncode}); see {log}"
            )


def _source(version: str, work: Path, progress: Callable[[str], None]) -> Path:
    """llama.cpp as vendored in the pinned llama-cpp-python sdist."""
    src = work / "src" / f"llama_cpp_python-{version}" / "vendor" / "llama.cpp"
    if (src / "CMakeLists.txt").exists():
        return src
    # scripts/bootstrap.sh keeps the sdist here: downloaded once for both.
    kept = cache_dir().parent / "sdist"
    sdist = kept / f"llama_cpp_python-{version}.tar.gz"
    if not sdist.exists():
        progress(f"==> downloading the llama-cpp-python {version} sdist")
        kept.mkdir(parents=True, exist_ok=True)
        pip = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary",
               ":all:", f"llama-cpp-python=={version}", "-d", str(kept)]  # fmt: skip
        if subprocess.run(pip).returncode or not sdist.exists():
            raise BuildError(f"pip could not download the llama-cpp-python {version} sdist")
    progress("==> unpacking vendor/llama.cpp")
    with tarfile.open(sdist) as tar:
        tar.extractall(work / "src", filter="data")
    if not (src / "CMakeLists.txt").exists():
        raise BuildError(f"the sdist has no vendor/llama.cpp at {src}")
    return src


def build(progress: Callable[[str], None] = print, jobs: int = 2) -> Path:
    """The cached llama-server binary, compiling it first if this CPU has none yet."""
    version = pinned_version()
    work = cache_dir(version)
    binary = work / "bin" / "llama-server"
    if binary.exists():
        return binary
    _check_compilers()
    cmake = _cmake()
    work.mkdir(parents=True, exist_ok=True)
    log = work / "build.log"
    start = time.monotonic()
    src = _source(version, work, progress)
    progress(f"==> building llama-server {version} (several minutes, once per CPU; log: {log})")
    _run([cmake, "-S", str(src), "-B", str(work / "build"), *CMAKE_OPTIONS], progress, log)
    _run(
        [cmake, "--build", str(work / "build"), "--target", "llama-server", "-j", str(jobs)],
        progress,
        log,
    )
    built = work / "build" / "bin" / "llama-server"
    if not built.exists():
        raise BuildError(f"the build finished without {built}; see {log}")
    binary.parent.mkdir(exist_ok=True)
    tmp = binary.with_suffix(".tmp")
    shutil.copy2(built, tmp)
    tmp.replace(binary)  # only a whole binary ever sits at the cached path
    progress(f"==> built {binary} in {time.monotonic() - start:.0f}s")
    return binary


@contextlib.contextmanager
def serve(
    model: str | Path, port: int, args: Sequence[str] = (), timeout: float = 300.0
) -> Iterator[str]:
    """Runs llama-server on 127.0.0.1:`port` until the block ends; yields its base URL."""
    binary = build()
    cmd = [str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(port), *args]
    # Its log goes to a file: a pipe nobody reads would fill and stall it.
    log = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                log.seek(0)
                err = log.read()
                raise RuntimeError(f"llama-server exited {proc.returncode}:\n{err[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"llama-server not healthy after {timeout:.0f}s")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build (or find) the cached binary and print its path")
    run = sub.add_parser("serve", help="run it on a GGUF until Ctrl-C")
    run.add_argument("model")
    run.add_argument("--port", type=int, default=8090)
    run.add_argument("extra", nargs="*", help="llama-server's own options, after --")
    opts = parser.parse_args()
    try:
        if opts.command == "build":
            print(build())
            return
        with serve(opts.model, opts.port, opts.extra) as url:
            print(f"llama-server on {url} (Ctrl-C stops it)")
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)
    except BuildError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
