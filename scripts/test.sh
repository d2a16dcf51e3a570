#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh machine (LLVM/MLIR 22 for the `mlir`
# feature, the CPU PJRT plugin), then runs the whole workspace's tests with the feature on.
set -euo pipefail
cd "$(dirname "$0")/.."

# LLVM/MLIR 22 (Debian packages; the apt step is skipped when they are already there).
if [ -x /usr/lib/llvm-22/bin/llvm-config ] && [ -e /usr/lib/llvm-22/lib/libMLIR.so ] \
   && [ -e /usr/lib/llvm-22/lib/libclang-22.so.1 ] && [ -x /usr/lib/llvm-22/bin/mlir-opt ]; then
  export MLIR_SYS_220_PREFIX=/usr/lib/llvm-22 TABLEGEN_220_PREFIX=/usr/lib/llvm-22 LIBCLANG_PATH=/usr/lib/llvm-22/lib
else
  eval "$(bash .ci/install-mlir.sh)"
fi

# ffmpeg/ffprobe: the mp4 tests (runtime/tests/video_mp4.rs) read our videos back with them.
if ! command -v ffprobe >/dev/null || ! command -v ffmpeg >/dev/null; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ffmpeg nasm
fi

# Python's safetensors (no torch): the end-to-end test checks that Python reads our stage files.
if ! python3 -c "import safetensors, numpy" 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check safetensors numpy
fi

# The CPU PJRT plugin: vidlower finds it, or fetches it itself (pip into its cache dir).
cargo run --quiet --features mlir -- plugin install cpu

cargo test --workspace --features mlir "$@"
