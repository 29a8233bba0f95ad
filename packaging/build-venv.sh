#!/usr/bin/env bash
# The one build step shared by packaging/install.sh and the Dockerfiles: pick the llama.cpp
# backend for the GPU found (or the one asked for), set CMAKE_ARGS for it, and pip install
# ollamapy into a virtual environment. Re-running upgrades that environment in place.
#
# Usage: packaging/build-venv.sh [--plan] [--gpu auto|cuda|rocm|cpu] [--root DIR] VENV [PIP_ARGS...]
#   VENV        where the environment lives when in use, e.g. /opt/ollamapy
#   PIP_ARGS    what to install (default: the checkout holding this script), e.g.
#               `ollamapy==0.1.0` or a wheel file
#   --gpu       backend; auto (default): CUDA when `nvidia-smi -L` works, ROCm when
#               `rocm-smi` works or $ROCM_PATH (default /opt/rocm) exists, else CPU
#   --root DIR  build under DIR (a staging root); scripts are rewritten to run from VENV
#   --plan      print the backend, CMAKE_ARGS and commands; change nothing
# Environment: CMAKE_ARGS (extra CMake flags, placed after the chosen ones so they win),
#   PYTHON (interpreter for a new environment, default python3, 3.11 or newer),
#   PIP_FIND_LINKS and the other PIP_* settings (pip reads them), ROCM_PATH, CUDACXX, HIPCXX.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=packaging/lib.sh
. "$here/lib.sh"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

gpu=auto root="" venv=""
while [ $# -gt 0 ]; do
  case "$1" in
    --plan) PLAN=1 ;;
    --gpu) gpu="${2:?--gpu needs a value}"; shift ;;
    --gpu=*) gpu="${1#*=}" ;;
    --root) root="${2:?--root needs a directory}"; shift ;;
    --root=*) root="${1#*=}" ;;
    -h | --help) usage; exit 0 ;;
    --) shift; break ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) break ;;
  esac
  shift
done
[ $# -gt 0 ] || die "missing VENV (see --help)"
venv="$1"
shift
case "$venv" in /*) ;; *) die "VENV must be an absolute path: $venv" ;; esac
root="$(absolute_root "$root")"
pip_args=("$@")
if [ ${#pip_args[@]} -eq 0 ]; then
  [ -f "$here/../pyproject.toml" ] || die "no PIP_ARGS and no checkout around $here"
  pip_args=("$(cd "$here/.." && pwd)")
fi
rocm_path="${ROCM_PATH:-/opt/rocm}"

# detect_gpu: set gpu and why from what this machine has.
detect_gpu() {
  local listing
  if listing="$(nvidia-smi -L 2>/dev/null)" && [ -n "$listing" ]; then
    gpu=cuda why="nvidia-smi: ${listing%%$'\n'*}"
  elif rocm-smi >/dev/null 2>&1; then
    gpu=rocm why="rocm-smi works"
  elif [ -d "$rocm_path" ]; then
    gpu=rocm why="$rocm_path exists"
  else
    gpu=cpu why="no working nvidia-smi or rocm-smi, no $rocm_path"
  fi
}

why="asked for"
case "$gpu" in
  auto) detect_gpu ;;
  cuda | rocm | cpu) ;;
  *) die "--gpu must be auto, cuda, rocm or cpu, not $gpu" ;;
esac

# Every backend is a module the runners load at start, the CPU one in a variant per CPU
# generation (cpu-cmake-args, the flags scripts/setup.sh builds with): the result runs on
# any CPU of this architecture, not only the build host's, with the best kernels each has.
[ -f "$here/cpu-cmake-args" ] || die "$here/cpu-cmake-args is missing (it goes with this script)"
cpu_args="$(cat "$here/cpu-cmake-args")"
case "$gpu" in
  cuda)
    backend_args="-DGGML_CUDA=on $cpu_args"
    # The toolkit is often installed but not on PATH (sudo resets it); CMake reads CUDACXX.
    if [ -z "${CUDACXX:-}" ] && ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
      export CUDACXX=/usr/local/cuda/bin/nvcc
    fi
    [ -n "${CUDACXX:-}" ] || command -v nvcc >/dev/null ||
      warn "nvcc not found: building llama-cpp-python for CUDA needs the CUDA toolkit (or a wheel in PIP_FIND_LINKS)"
    ;;
  rocm)
    backend_args="-DGGML_HIP=on $cpu_args"
    # llama.cpp builds HIP with ROCm's clang, found through hipconfig (ggml HIP build docs).
    hipconfig="$(command -v hipconfig || printf '%s' "$rocm_path/bin/hipconfig")"
    if [ -z "${HIPCXX:-}" ] && [ -x "$hipconfig" ]; then
      HIPCXX="$("$hipconfig" -l)/clang"
      HIP_PATH="${HIP_PATH:-$("$hipconfig" -R)}"
      export HIPCXX HIP_PATH
    fi
    [ -n "${HIPCXX:-}" ] ||
      warn "hipconfig not found: building llama-cpp-python for ROCm needs the HIP SDK (or a wheel in PIP_FIND_LINKS)"
    ;;
  cpu) backend_args="$cpu_args" ;;
esac
export CMAKE_ARGS="$backend_args${CMAKE_ARGS:+ $CMAKE_ARGS}"

say "gpu: $gpu ($why)"
say "CMAKE_ARGS=$CMAKE_ARGS"
for name in CUDACXX HIPCXX HIP_PATH PIP_FIND_LINKS; do
  [ -z "${!name:-}" ] || say "$name=${!name}"
done

target="$root$venv"
py="$target/bin/python"
existed=0
[ -x "$py" ] && existed=1
if [ "$existed" = 0 ]; then
  python="${PYTHON:-python3}"
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null ||
    die "$python is not Python 3.11 or newer (set PYTHON)"
  run "$python" -m venv "$target"
fi

# The backend an environment was built for is recorded next to it. pip caches the wheel it
# built by source, not by CMAKE_ARGS, and keeps an installed llama-cpp-python of the pinned
# version, so a new backend means uninstalling it and building without the cache.
marker="$target/ollamapy-build.env"
want="CMAKE_ARGS=$CMAKE_ARGS"
pip_opts=(--upgrade)
if [ "$(cat "$marker" 2>/dev/null || true)" != "$want" ]; then
  pip_opts+=(--no-cache-dir)
  [ "$existed" = 0 ] || run "$py" -m pip uninstall --yes llama-cpp-python
fi
run "$py" -m pip install "${pip_opts[@]}" "${pip_args[@]}"

if [ -n "$root" ] && [ "$PLAN" != 1 ]; then
  # Scripts pip wrote under the staging root name it in their #! line; make them name VENV.
  mapfile -t staged < <(grep -rlIF -- "$target" "$target/bin" "$target/pyvenv.cfg" || true)
  if [ ${#staged[@]} -gt 0 ]; then
    pattern="$(printf '%s' "$target" | sed 's/[][\.*^$|]/\\&/g')"
    run sed -i "s|$pattern|$venv|g" "${staged[@]}"
  fi
fi

say "+ record $want in $marker"
[ "$PLAN" = 1 ] || printf '%s\n' "$want" >"$marker"
