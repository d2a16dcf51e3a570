# Sourced by scripts/test.sh and .ci/run: LLVM/MLIR 22 for the `mlir` feature (installed with
# Debian's packages when missing) and the variables its build reads. Without them a build with
# `--features mlir` finds Debian's default llvm-config (14) and fails.
if [ -x /usr/lib/llvm-22/bin/llvm-config ] && [ -e /usr/lib/llvm-22/lib/libMLIR.so ] \
   && [ -e /usr/lib/llvm-22/lib/libclang-22.so.1 ] && [ -x /usr/lib/llvm-22/bin/mlir-opt ]; then
  export MLIR_SYS_220_PREFIX=/usr/lib/llvm-22 TABLEGEN_220_PREFIX=/usr/lib/llvm-22 LIBCLANG_PATH=/usr/lib/llvm-22/lib
else
  eval "$(bash .ci/install-mlir.sh)"
fi
