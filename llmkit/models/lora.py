"""LoRA adapters: what ``--lora PATH[:SCALE]``, ``--lora-modules NAME=PATH[:SCALE]``,
a Modelfile's ``ADAPTER`` and ``/api/create``'s ``adapters`` name, made into a GGUF
adapter llama.cpp applies, and checked against the base model before anything
loads.

A GGUF adapter (``general.type`` "adapter", ``adapter.type`` "lora") is used as
it is. A PEFT adapter (a directory with ``adapter_config.json`` and
``adapter_model.safetensors``) is converted once by llama.cpp's own
``convert_lora_to_gguf.py`` from the pinned sdist (``Path(sys.prefix)/"llama.cpp"``,
put there by ``scripts/bootstrap.sh``; it needs torch, the ``transformers``
extra), with ``--base`` the base model's Hugging Face directory when the adapter's
config names one on this disk, else ``--base-model-id`` with the name it records.
The GGUF lands beside the directory's files in ``<dir>/llmkit-lora-<digest>.gguf``
where it is writable, else under the cache directory given.

An adapter made for another model is refused with both names: another
architecture, or a tensor it changes that the base lacks or holds in another
shape (what llama.cpp would refuse later, with a line in its log only).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from llmkit.errors import ConfigError, ModelSpecError
from llmkit.models.gguf_header import GGUFHeader, read_gguf_header
from llmkit.models.llama_source import llama_cpp_dir

PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


@dataclass(frozen=True)
class AdapterSpec:
    """One adapter as given: the name it is served under (None: the base's own
    model carries it), its file or directory, and its scale."""

    path: Path
    scale: float = 1.0
    name: str | None = None

    @property
    def label(self) -> str:
        """How errors and listings name it: its served name, else its file's."""
        return self.name or adapter_name(self.path)


def parse_lora(value: str) -> AdapterSpec:
    """``PATH[:SCALE]`` (llama-server's ``--lora`` and ``--lora-scaled``) or
    ``NAME=PATH[:SCALE]`` (vLLM's ``--lora-modules``)."""
    name: str | None = None
    text = value.strip()
    head, eq, rest = text.partition("=")
    if eq and "/" not in head and head:
        name, text = head.strip(), rest.strip()
    scale = 1.0
    base, colon, tail = text.rpartition(":")
    if colon and base:
        try:
            scale = float(tail)
            text = base
        except ValueError:  # a ':' in the path itself
            pass
    if not text:
        raise ConfigError(f"--lora {value!r}: give PATH[:SCALE] or NAME=PATH[:SCALE].")
    return AdapterSpec(Path(text).expanduser(), scale, name)


def adapter_name(path: Path) -> str:
    """The model name an adapter is served under when none is given: its file's stem,
    or its directory's name (vLLM's modules are named; llama-server's are numbered)."""
    return path.stem if path.suffix.lower() == ".gguf" else path.name


def is_peft_dir(path: Path) -> bool:
    return path.is_dir() and (path / PEFT_CONFIG).is_file()


def adapter_gguf(spec: AdapterSpec, cache: Path) -> Path:
    """The GGUF adapter ``spec`` names: itself, or its PEFT directory converted."""
    path = spec.path
    if path.is_file():
        return path
    if not path.exists():
        raise ModelSpecError(f"LoRA adapter {spec.label}: no such file or directory: {path}")
    if not is_peft_dir(path):
        raise ModelSpecError(
            f"LoRA adapter {spec.label}: {path} is neither a GGUF adapter nor a PEFT "
            f"directory ({PEFT_CONFIG} with {' or '.join(PEFT_WEIGHTS)})."
        )
    return convert_peft(path, cache, spec.label)


def convert_peft(directory: Path, cache: Path, label: str) -> Path:
    """``directory`` (PEFT) as a GGUF adapter, converted once: the output is named by a
    digest of the directory's config and weights, so an adapter retrained in place is
    converted again."""
    import json

    weights = next((directory / w for w in PEFT_WEIGHTS if (directory / w).is_file()), None)
    if weights is None:
        raise ModelSpecError(
            f"LoRA adapter {label}: {directory} has {PEFT_CONFIG} but no "
            f"{' or '.join(PEFT_WEIGHTS)}."
        )
    digest = hashlib.sha256()
    for f in (directory / PEFT_CONFIG, weights):
        st = f.stat()
        digest.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    out_name = f"llmkit-lora-{digest.hexdigest()[:16]}.gguf"
    for out in (directory / out_name, cache / out_name):
        if out.is_file():
            return out
    try:
        config = json.loads((directory / PEFT_CONFIG).read_text())
    except (OSError, ValueError) as e:
        raise ModelSpecError(f"LoRA adapter {label}: cannot read {PEFT_CONFIG}: {e}") from None
    base = str(config.get("base_model_name_or_path") or "")
    if base and (Path(base).expanduser() / "config.json").is_file():
        base_args = ["--base", str(Path(base).expanduser())]
    elif base:
        base_args = ["--base-model-id", base]
    else:
        raise ModelSpecError(
            f"LoRA adapter {label}: its {PEFT_CONFIG} names no base model "
            "(base_model_name_or_path), which the converter needs for the base's shapes."
        )
    out = directory / out_name if _writable(directory) else cache / out_name
    out.parent.mkdir(parents=True, exist_ok=True)
    _run_converter(directory, out, base_args, label)
    return out


def _writable(directory: Path) -> bool:
    import os

    return os.access(directory, os.W_OK)


def converter_path() -> Path:
    return llama_cpp_dir() / "convert_lora_to_gguf.py"


def _run_converter(directory: Path, out: Path, base_args: list[str], label: str) -> None:
    script = converter_path()
    if not script.is_file():
        raise ConfigError(
            f"LoRA adapter {label} is a PEFT directory, which llama.cpp's converter turns "
            f"into GGUF, but {script} is missing: run scripts/bootstrap.sh."
        )
    try:
        import torch  # noqa: F401  (the converter's own need, checked here to say so)
    except ImportError:
        raise ConfigError(
            f"Converting the PEFT adapter {label} needs torch: "
            "pip install 'llmkit[transformers]', or pass a GGUF adapter."
        ) from None
    part = out.with_name(out.name + ".part")  # never a half-written adapter under its name
    cmd = [sys.executable, str(script), str(directory), *base_args, "--outfile", str(part)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0 or not part.is_file():
        part.unlink(missing_ok=True)
        last = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise ModelSpecError(
            f"llama.cpp's LoRA converter could not convert {label} ({directory}): "
            + " | ".join(last)
        )
    part.replace(out)


def check_adapter(adapter: Path, base: Path, adapter_label: str, base_label: str) -> int:
    """Refuse an adapter made for another model than ``base``, naming both; its size
    in bytes (what it adds to memory) when it fits."""
    a = read_gguf_header(adapter)
    if a.fields.get("general.type") != "adapter" or a.fields.get("adapter.type") != "lora":
        raise ModelSpecError(
            f"{adapter_label} ({adapter}) is not a LoRA adapter: its GGUF says general.type="
            f"{a.fields.get('general.type')!r}, adapter.type={a.fields.get('adapter.type')!r}."
        )
    b = read_gguf_header(base)
    problem = mismatch(a, b)
    if problem:
        made_for = a.fields.get("general.base_model.0.name")
        made = f" (made for {made_for})" if made_for else ""
        raise ModelSpecError(
            f"The LoRA adapter {adapter_label}{made} does not fit the base model "
            f"{base_label}: {problem}."
        )
    return adapter.stat().st_size


def mismatch(a: GGUFHeader, b: GGUFHeader) -> str:
    """Why adapter ``a`` cannot apply to model ``b``; "" when it can. A LoRA pair
    ``X.lora_a`` (in x r) and ``X.lora_b`` (r x out), in ggml's order, changes the
    base tensor ``X`` of shape (in x out)."""
    arch_a = a.fields.get("general.architecture")
    arch_b = b.fields.get("general.architecture")
    if arch_a != arch_b:
        return f"the adapter is for the {arch_a} architecture, the model is {arch_b}"
    shapes = {name: shape for name, shape, _ in b.tensors}
    pairs: dict[str, dict[str, tuple[int, ...]]] = {}
    for name, shape, _ in a.tensors:
        stem, dot, part = name.rpartition(".")
        if dot and part in ("lora_a", "lora_b"):
            pairs.setdefault(stem, {})[part] = shape
    for stem, pair in sorted(pairs.items()):
        if stem not in shapes:
            return f"the model has no tensor {stem}"
        la, lb, want = pair.get("lora_a"), pair.get("lora_b"), shapes[stem]
        if la is None or lb is None:
            return f"{stem} has only one of lora_a and lora_b"
        if len(want) < 2 or la[0] != want[0] or lb[1] != want[1] or la[1] != lb[0]:
            return (
                f"{stem} is {_dims(want)} in the model, the adapter changes {_dims((la[0], lb[1]))}"
            )
    return ""


def _dims(shape: tuple[int, ...]) -> str:
    return " x ".join(str(d) for d in shape)
