#!/usr/bin/env bash
# Installs what `cargo test -p vidlower-backends --features mlir` needs on Debian 12 (bookworm):
# LLVM/MLIR 22 from Debian's own archive (the 1:22.1.x~deb12u1 packages come from
# bookworm-security), and prints the environment the build needs. Run as root (or with sudo).
#
#   .ci/install-mlir.sh            # installs, then prints `export ...` lines
#   eval "$(.ci/install-mlir.sh)"  # installs and sets the environment in this shell
#
# Why each package (DESIGN.md's list was the first five; on a machine with only those, nothing
# provides llvm-config, and bindgen finds no libclang: both were seen failing here):
#   libmlir-22-dev          MLIR C API headers and the static libMLIR*.a that mlir-sys links
#   llvm-22-dev             llvm-config (through llvm-22) and the static LLVM libraries: mlir-sys and
#                           tblgen run `llvm-config --link-static`; libmlir-22-dev does not pull it in
#   libpolly-22-dev         `llvm-config --link-static --libnames` lists libPolly.a/libPollyISL.a;
#                           without them llvm-config fails and mlir-sys falls back to a shared
#                           libMLIR-C that Debian does not ship
#   libzstd-dev libz3-dev libxml2-dev
#                           `llvm-config --system-libs`: -lz3 -lz -lzstd -lxml2
#   libclang1-22            libclang for bindgen (mlir-sys and tblgen generate their Rust bindings
#                           at build time): "Unable to find libclang" without it
#   libclang-common-22-dev  clang's builtin headers: "'stddef.h' file not found" without it
#   mlir-22-tools           mlir-opt, with which one test reads our bytecode back (skipped without)
set -euo pipefail

packages=(
  libmlir-22-dev llvm-22-dev libpolly-22-dev
  libzstd-dev libz3-dev libxml2-dev
  libclang1-22 libclang-common-22-dev
  mlir-22-tools
)

sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi

{
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${packages[@]}"
} >&2

prefix=/usr/lib/llvm-22
"$prefix/bin/llvm-config" --version >&2

# mlir-sys reads MLIR_SYS_220_PREFIX (it runs $prefix/bin/llvm-config), tblgen (melior-macro)
# reads TABLEGEN_220_PREFIX, and bindgen's clang-sys reads LIBCLANG_PATH (pinned so that it
# loads libclang 22, whose builtin headers libclang-common-22-dev installs).
cat <<EOF
export MLIR_SYS_220_PREFIX=$prefix
export TABLEGEN_220_PREFIX=$prefix
export LIBCLANG_PATH=$prefix/lib
EOF
