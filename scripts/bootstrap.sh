#!/usr/bin/env bash
# Set up .venv with llmkit; `bootstrap.sh test` adds the test tools, and
# `bootstrap.sh test,transformers` torch (the CPU wheel) and transformers too.
#
# llama-cpp-python ships only as source. We build it once per CPU without
# llama.cpp's AMX kernels (they crash on Sapphire Rapids: llama.cpp #20824) and
# otherwise native, and keep the wheel in ~/.cache/llmkit/wheels keyed by the
# CPU's flags, the version and the build flags: a wheel fits only its CPU.
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

cpu=$(grep -m1 -E '^(flags|Features)' /proc/cpuinfo 2>/dev/null || uname -m)
key=$(printf '%s\n' "$cpu" "$version" "$cmake_args" "$(.venv/bin/python -V)" | sha256sum | cut -c1-16)
marker=.venv/.llama-cpp-build
if [ "$(cat "$marker" 2>/dev/null)" != "$key" ]; then
  cache="${XDG_CACHE_HOME:-$HOME/.cache}/llmkit/wheels/$key"
  if ! ls "$cache"/llama_cpp_python-"$version"-*.whl >/dev/null 2>&1; then
    echo "==> building llama-cpp-python $version for this CPU, without AMX (about 5 minutes, once)"
    mkdir -p "$cache"
    start=$(date +%s)
    CMAKE_ARGS="$cmake_args" .venv/bin/python -m pip wheel --no-deps --no-cache-dir \
      --no-binary llama-cpp-python -w "$cache" "llama-cpp-python==$version"
    echo "==> built in $(( $(date +%s) - start ))s"
  fi
  .venv/bin/python -m pip install -q --force-reinstall --no-deps "$cache"/llama_cpp_python-"$version"-*.whl
  .venv/bin/python -m pip install -q "llama-cpp-python==$version"  # its own dependencies
  echo "$key" > "$marker"
fi

echo "==> installing llmkit${extras:+ [$extras]}"
.venv/bin/python -m pip install -q -e ".${extras:+[$extras]}"
