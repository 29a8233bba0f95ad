#!/usr/bin/env bash
# Set everything up (test extras, docker-registry, Go toolchain), run the static checks
# (ruff, mypy) and every test tier except GPU tests. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
# the venv's tools (ollamapy, hadolint, shellcheck, go) are found by the tests on PATH
export PATH="$PWD/.venv/bin:$PATH"
bash scripts/lint.sh
exec .venv/bin/python -m pytest "$@"
