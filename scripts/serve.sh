#!/usr/bin/env bash
# Set everything up, import the embedded default model (smollm2:135m) and serve on OLLAMA_HOST.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ollamapy import-default
exec .venv/bin/ollamapy serve
