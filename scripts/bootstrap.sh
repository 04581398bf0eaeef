#!/usr/bin/env bash
# Set up .venv with llmkit; `bootstrap.sh test` adds the test tools, and
# `bootstrap.sh test,transformers` torch (the CPU wheel) and transformers too,
# `bootstrap.sh docs` MkDocs and its Material theme (`make docs`).
#
# llama-cpp-python ships only as source. We build it once per CPU without
# llama.cpp's AMX kernels (they crash on Sapphire Rapids: llama.cpp #20824) and
# otherwise native, and keep the wheel in ~/.cache/llmkit/wheels keyed by the
# CPU's flags, the version and the build flags: a wheel fits only its CPU.
# Its vendored llama.cpp gets llmkit's patches first (scripts/llama-cpp/, see
# docs/engines/llamacpp.md): attention over only the cells a sequence can see,
# with results that do not depend on where those cells sit in the shared KV pool
# ("The KV pool"); and Q4_1 weights read once for the few rows a speculative
# step verifies ("Speculative decoding"). Both keep ggml's stock path reachable.
set -euo pipefail
cd "$(dirname "$0")/.."

extras="${1:-}"
python="${PYTHON:-python3}"
version=$(sed -n 's/.*"llama-cpp-python==\([0-9.]*\)".*/\1/p' pyproject.toml)
flags="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
cmake_args="-DCMAKE_C_FLAGS='${flags}' -DCMAKE_CXX_FLAGS='${flags}'"

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$python" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi

# The pinned sdist, downloaded once and kept: the build reads it, and so does
# llama.cpp's reference data below.
sdist() {
  local dir="${XDG_CACHE_HOME:-$HOME/.cache}/llmkit/sdist"
  local file="$dir/llama_cpp_python-$version.tar.gz"
  if [ ! -f "$file" ]; then
    echo "==> downloading the llama-cpp-python $version sdist" >&2
    mkdir -p "$dir"
    .venv/bin/python -m pip download -q --no-deps --no-binary :all: -d "$dir" "llama-cpp-python==$version" >&2
  fi
  echo "$file"
}

cpu=$(grep -m1 -E '^(flags|Features)' /proc/cpuinfo 2>/dev/null || uname -m)
root=$PWD
patches=(scripts/llama-cpp/packed-attention.patch scripts/llama-cpp/column-matmul.patch)
key=$(printf '%s\n' "$cpu" "$version" "$cmake_args" "$(.venv/bin/python -V)" "$(cat "${patches[@]}" | sha256sum)" | sha256sum | cut -c1-16)
marker=.venv/.llama-cpp-build
if [ "$(cat "$marker" 2>/dev/null)" != "$key" ]; then
  cache="${XDG_CACHE_HOME:-$HOME/.cache}/llmkit/wheels/$key"
  if ! ls "$cache"/llama_cpp_python-"$version"-*.whl >/dev/null 2>&1; then
    echo "==> building llama-cpp-python $version for this CPU, without AMX, with llmkit's patches (about 5 minutes, once)"
    mkdir -p "$cache"
    start=$(date +%s)
    src=$(mktemp -d)
    tar -xzf "$(sdist)" -C "$src"
    for p in "${patches[@]}"; do
      (cd "$src/llama_cpp_python-$version/vendor/llama.cpp" && git apply -p1 "$root/$p")
    done
    CMAKE_ARGS="$cmake_args" .venv/bin/python -m pip wheel --no-deps --no-cache-dir \
      -w "$cache" "$src/llama_cpp_python-$version"
    rm -rf "$src"
    echo "==> built in $(( $(date +%s) - start ))s"
  fi
  .venv/bin/python -m pip install -q --force-reinstall --no-deps "$cache"/llama_cpp_python-"$version"-*.whl
  .venv/bin/python -m pip install -q "llama-cpp-python==$version"  # its own dependencies
  echo "$key" > "$marker"
fi

# llama.cpp's own files that llmkit reads beside the bindings, from the same
# pinned source: the converters (safetensors and LoRA adapters to GGUF, with
# their gguf-py and conversion package) and the reference data the tests hold
# llmkit to (the chat templates of the model families, the chat tests' parses).
ref=.venv/llama.cpp
if [ "$(cat "$ref/.version" 2>/dev/null)" != "$version" ]; then
  echo "==> keeping llama.cpp $version's converters, chat templates and chat tests in $ref"
  rm -rf "$ref" && mkdir -p "$ref"
  top="llama_cpp_python-$version/vendor/llama.cpp"
  tar -xzf "$(sdist)" -C "$ref" --strip-components=3 \
    "$top/models/templates" "$top/tests" "$top/conversion" "$top/gguf-py" \
    "$top/convert_hf_to_gguf.py" "$top/convert_lora_to_gguf.py" "$top/common/chat.cpp" \
    "$top/LICENSE"
  echo "$version" > "$ref/.version"
fi

echo "==> installing llmkit${extras:+ [$extras]}"
.venv/bin/python -m pip install -q -e ".${extras:+[$extras]}"
