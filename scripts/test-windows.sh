#!/usr/bin/env bash
# Build ipckit for x86_64-pc-windows-gnu and run its Windows tests under Wine, through the
# shared recipe ../shared/windows/test-under-wine.sh (beside the checkout; it installs Debian's
# Rust, the mingw-w64 toolchain and Wine on first use, about 2 GB). Run from anywhere.
#
# What runs: the library's unit tests, tests/windows_shm.rs and tests/windows_sync.rs with
# --no-default-features, windows_shm with a plain Win32 C program (scripts/windows/shm_peer.c,
# compiled here with x86_64-w64-mingw32-gcc) as the other side of its interop tests; then a build of the crate and
# those tests with the default features (mechanisms not ported yet are compiled out on Windows).
#
# The Windows build gets its own target directory: $IPCKIT_WINDOWS_TARGET_DIR, else
# "windows" under $CARGO_TARGET_DIR (or under target/).
set -euo pipefail
cd "$(dirname "$0")/.."
recipe=../shared/windows/test-under-wine.sh
if [ ! -x "$recipe" ]; then
  echo "test-windows.sh: $recipe is missing (it lives beside the checkout, in ../shared/windows/)" >&2
  exit 1
fi
export CARGO_TARGET_DIR=${IPCKIT_WINDOWS_TARGET_DIR:-$(realpath -m "${CARGO_TARGET_DIR:-target}")/windows}
# The first run installs the toolchain (Wine, mingw-w64) and builds std; a no-op build does it.
"$recipe" -p ipckit --no-default-features --lib --test windows_shm --test windows_sync --no-run
# The C peer of the interop tests; they fail (not skip) without it here.
mkdir -p "$CARGO_TARGET_DIR"
x86_64-w64-mingw32-gcc -O2 -Wall -o "$CARGO_TARGET_DIR/shm_peer.exe" scripts/windows/shm_peer.c
export IPCKIT_C_PEER=$CARGO_TARGET_DIR/shm_peer.exe IPCKIT_REQUIRE_C_PEER=1
"$recipe" -p ipckit --no-default-features --lib --test windows_shm --test windows_sync
"$recipe" -p ipckit --lib --test windows_shm --test windows_sync --no-run
