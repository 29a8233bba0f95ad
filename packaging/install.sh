#!/usr/bin/env bash
# Install or upgrade ollamapy as a systemd service: a system user `ollamapy` (groups render
# and video, home /var/lib/ollamapy holding the model store), a virtual environment in
# /opt/ollamapy built for the GPU found (packaging/build-venv.sh), the unit
# /etc/systemd/system/ollamapy.service, the settings file /etc/ollamapy/ollamapy.env (only
# if absent) and /usr/local/bin/ollamapy; then daemon-reload, enable and restart. Running it
# again upgrades in place; the model store and an existing settings file are never touched.
#
# Usage: sudo packaging/install.sh [--plan] [--root DIR] [--gpu auto|cuda|rocm|cpu] [PIP_ARGS...]
#   --plan      print what would be done (GPU found, CMAKE_ARGS, commands); change nothing
#   --root DIR  install into a staging root (an image being built; DESTDIR works too): the
#               user is created with `useradd --root`, the unit enabled with
#               `systemctl --root`, nothing is started
#   --gpu       llama.cpp backend, detected by default (see packaging/build-venv.sh)
#   PIP_ARGS    what to install (default: this checkout), e.g. `ollamapy==0.1.0`
# Environment: PIP_FIND_LINKS (directories or URLs of wheels, e.g. a prebuilt
#   llama-cpp-python; use `sudo PIP_FIND_LINKS=... ` as sudo drops the environment),
#   CMAKE_ARGS (extra CMake flags), PYTHON (interpreter, default python3).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=packaging/lib.sh
. "$here/lib.sh"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

readonly user=ollamapy home=/var/lib/ollamapy venv=/opt/ollamapy
readonly unit=/etc/systemd/system/ollamapy.service envfile=/etc/ollamapy/ollamapy.env
root="${DESTDIR:-}"
build_opts=()
while [ $# -gt 0 ]; do
  case "$1" in
    --plan) PLAN=1 ;;
    --root) root="${2:?--root needs a directory}"; shift ;;
    --root=*) root="${1#*=}" ;;
    --gpu) build_opts+=(--gpu "${2:?--gpu needs a value}"); shift ;;
    --gpu=*) build_opts+=(--gpu "${1#*=}") ;;
    -h | --help) usage; exit 0 ;;
    --) shift; break ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) break ;;
  esac
  shift
done
root="$(absolute_root "$root")"
[ "$PLAN" = 1 ] && build_opts+=(--plan)
[ -n "$root" ] && build_opts+=(--root "$root")
if [ "$PLAN" != 1 ] && [ -z "$root" ] && [ "$(id -u)" -ne 0 ]; then
  die "run as root (sudo $0), or use --plan or --root DIR"
fi
# useradd, groupadd and usermod act on the staging root's /etc with --root.
account_opts=()
[ -n "$root" ] && account_opts=(--root "$root")

# has_entry DATABASE NAME: whether the target system's passwd/group database has NAME.
has_entry() {
  if [ -n "$root" ]; then
    grep -q "^$2:" "$root/etc/$1" 2>/dev/null
  else
    getent "$1" "$2" >/dev/null
  fi
}

say "ollamapy install into ${root:-/}$([ "$PLAN" = 1 ] && printf ' (plan only)')"

for group in render video; do
  has_entry group "$group" || run groupadd "${account_opts[@]}" --system "$group"
done
if has_entry passwd "$user"; then
  run usermod "${account_opts[@]}" --append --groups render,video "$user"
else
  run useradd "${account_opts[@]}" --system --user-group --create-home --home-dir "$home" \
    --shell /usr/sbin/nologin --groups render,video --comment "ollamapy server" "$user"
fi
# As Ollama's installer does: the admin who ran sudo may read the service's store.
if [ -z "$root" ] && [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
  run usermod --append --groups "$user" "$SUDO_USER"
fi

bash "$here/build-venv.sh" "${build_opts[@]}" "$venv" "$@"

run install -D -m 0644 "$here/ollamapy.service" "$root$unit"
if [ -e "$root$envfile" ]; then
  say "keeping $envfile"
else
  run install -D -m 0644 "$here/ollamapy.env" "$root$envfile"
fi
run install -d "$root/usr/local/bin"
run ln -sfn "$venv/bin/ollamapy" "$root/usr/local/bin/ollamapy"

if [ -n "$root" ]; then
  run systemctl --root="$root" enable ollamapy.service
else
  state="$(systemctl is-system-running 2>/dev/null || true)"
  case "$state" in
    running | degraded | starting)
      run systemctl daemon-reload
      run systemctl enable ollamapy.service
      run systemctl restart ollamapy.service
      ;;
    *) say "systemd is not running here (${state:-no systemctl}); start the server with: sudo -u $user $venv/bin/ollamapy serve" ;;
  esac
fi
say "done: settings in $envfile, models in $home/.ollama/models, logs: journalctl -u ollamapy"
