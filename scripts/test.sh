#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh machine (the CPU PJRT plugin, and
# LLVM 22 for the `mlir` feature), then runs the whole workspace's tests with the feature on.
set -euo pipefail
cd "$(dirname "$0")/.."

# LLVM/MLIR 22 for the `mlir` feature (Debian packages; skipped when already installed).
if [ ! -e /usr/lib/llvm-22/lib/libMLIR.so ]; then
  bash .ci/install-mlir.sh
fi
export MLIR_SYS_220_PREFIX=/usr/lib/llvm-22 TABLEGEN_220_PREFIX=/usr/lib/llvm-22

# The CPU PJRT plugin: vidlower finds or fetches it itself (pip into its cache dir).
cargo run --quiet -- plugin install cpu

cargo test --workspace --features mlir "$@"
