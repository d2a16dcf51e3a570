#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh machine (LLVM/MLIR 22 for the `mlir`
# feature, the CPU PJRT plugin), then runs the whole workspace's tests with the feature on.
set -euo pipefail
cd "$(dirname "$0")/.."

# LLVM/MLIR 22 and its build variables.
source scripts/mlir-env.sh

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

# Every test binary's result, summed into one closing line (also kept for .ci/run to repeat).
# Tests that need a GPU pass when none is found (libtest has no runtime skip) but append a line
# to $VIDLOWER_SKIP_LOG; the summary counts those as skipped, not passed. VIDLOWER_REQUIRE_CUDA=1
# makes them fail instead.
mkdir -p target
export VIDLOWER_SKIP_LOG="$PWD/target/test-skipped.log"
rm -f "$VIDLOWER_SKIP_LOG"
cargo test --workspace --features mlir "$@" 2>&1 | tee target/test-output.log
skipped_at_runtime=$( (cat "$VIDLOWER_SKIP_LOG" 2>/dev/null || true) | wc -l)
if [ "$skipped_at_runtime" -gt 0 ]; then
  echo "skipped (no CUDA plugin/device):"
  sed 's/^/  /' "$VIDLOWER_SKIP_LOG"
fi
awk -v s="$skipped_at_runtime" '/^test result:/ { p += $4; f += $6; i += $8 }
  END { printf "tests: %d passed, %d failed, %d skipped (%d ignored, %d without a GPU)\n", p - s, f, i + s, i, s }' \
  target/test-output.log | tee target/test-summary.txt
