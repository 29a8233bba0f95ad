#!/usr/bin/env bash
# Static checks: ruff (lint and import order) and mypy (configured in pyproject.toml: strict
# on the core, every body checked in the supervisor and the runner). Exits non-zero on any
# finding.
#
# mypy must see runner/ and supervisor/ under the names they install as (ollamapy.runner,
# ollamapy.supervisor). The editable install maps them with an import hook, which mypy
# does not follow, and mypy derives a module's name from its path, so `-p ollamapy.runner`
# finds nothing and checking the folders directly would name them `runner.*`. So the
# script builds the installed layout from symlinks (.mypy_cache/tree/ollamapy/: every entry
# of ollamapy/, plus runner/ and supervisor/), runs `mypy -p ollamapy` there, and prints
# the repository's own paths in the findings.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

status=0
.venv/bin/ruff check . || status=1

tree=.mypy_cache/tree
rm -rf "$tree"
mkdir -p "$tree/ollamapy"
for entry in ollamapy/*; do
    ln -s "$repo/$entry" "$tree/ollamapy/${entry#ollamapy/}"
done
ln -s "$repo/runner" "$tree/ollamapy/runner"
ln -s "$repo/supervisor" "$tree/ollamapy/supervisor"

# The symlinks' own paths are what mypy prints: map them back to the repository's.
(cd "$tree" && "$repo/.venv/bin/mypy" --config-file "$repo/pyproject.toml" --cache-dir "$repo/.mypy_cache" -p ollamapy) \
    | sed -e 's#^ollamapy/runner/#runner/#' -e 's#^ollamapy/supervisor/#supervisor/#' || status=1
exit "$status"
