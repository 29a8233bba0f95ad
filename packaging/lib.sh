# Helpers sourced by packaging/install.sh and packaging/build-venv.sh (not run on its own).
# Every action goes through `run`, which prints the command and, unless PLAN=1, runs it:
# so `--plan` prints exactly the commands a real run would execute.
# shellcheck shell=bash

PLAN="${PLAN:-0}"

# say TEXT...: a progress line on stdout.
say() { printf '%s\n' "$*"; }

# warn TEXT...: something the user should fix, on stderr; the run goes on.
warn() { printf '%s: warning: %s\n' "${0##*/}" "$*" >&2; }

# die TEXT...: stop with an error on stderr.
die() {
  printf '%s: %s\n' "${0##*/}" "$*" >&2
  exit 1
}

# run CMD ARGS...: print "+ CMD ARGS" (shell-quoted), then run it unless planning.
run() {
  printf '+'
  printf ' %q' "$@"
  printf '\n'
  [ "$PLAN" = 1 ] || "$@"
}

# absolute_root DIR: DIR as an absolute path without a trailing slash; "" for "/" or "".
absolute_root() {
  [ -n "$1" ] || return 0
  local dir
  dir="$(realpath -m -- "$1")"
  [ "$dir" = / ] || printf '%s' "$dir"
}
