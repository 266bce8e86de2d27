#!/usr/bin/env bash
# Build ipckit for x86_64-pc-windows-gnu and run its Windows tests under Wine, through the
# shared recipe ../shared/windows/test-under-wine.sh (beside the checkout; it installs Debian's
# Rust, the mingw-w64 toolchain and Wine on first use, about 2 GB). Run from anywhere.
#
# What runs: clippy for the Windows target (warnings are errors), the library's unit tests and every crates/ipckit/tests/windows_*.rs, with
# --no-default-features and with the default features plus `tokio` (the async forms). Every plain Win32 C program in
# scripts/windows/*.c is compiled first with x86_64-w64-mingw32-gcc into $IPCKIT_C_PEERS
# (X.c -> X.exe): the interop tests run them as the other side and fail (not skip) without them.
# Then the doc examples of the Windows-only files run under Wine, and scripts/windows/cli-smoke.sh
# builds ipckit.exe and runs it under Wine (pipe, slot, map, service/call, ls and ls --prune,
# msg, clip, dde, demo, and Ctrl-C cleanup, between separate ipckit.exe processes).
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
tests=()
for t in crates/ipckit/tests/windows_*.rs; do
  tests+=(--test "$(basename "$t" .rs)")
done
# The first run installs the toolchain (Wine, mingw-w64) and builds std; a no-op build does it.
"$recipe" -p ipckit --no-default-features --lib "${tests[@]}" --no-run
# Clippy for the Windows target (Debian's clippy, matching the toolchain the recipe installed):
# the library, its unit tests and the Windows test suites, with no features and with all the
# default ones plus tokio; warnings are errors, as on Linux.
if [ ! -x /usr/bin/cargo-clippy ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rust-web-clippy >/dev/null
fi
# One pass per feature set: with the test profile, the library is linted both as the unit-test
# crate and as the suites' dependency.
for features in --no-default-features "--features tokio"; do
  # shellcheck disable=SC2086
  env PATH=/usr/bin:$PATH RUSTC_BOOTSTRAP=1 cargo clippy -q -Zbuild-std --target x86_64-pc-windows-gnu \
    -p ipckit $features --profile test --lib "${tests[@]}" -- -D warnings
done
# The C peers of the interop tests.
export IPCKIT_C_PEERS=$CARGO_TARGET_DIR/c-peers
mkdir -p "$IPCKIT_C_PEERS"
for c in scripts/windows/*.c; do
  x86_64-w64-mingw32-gcc -O2 -Wall -Werror -o "$IPCKIT_C_PEERS/$(basename "$c" .c).exe" "$c"
done
export IPCKIT_C_PEER=$IPCKIT_C_PEERS/shm_peer.exe IPCKIT_REQUIRE_C_PEER=1
"$recipe" -p ipckit --no-default-features --lib "${tests[@]}"
# The default features plus tokio: the async forms (pipe::tokio) and their tests.
"$recipe" -p ipckit --features tokio --lib "${tests[@]}"
# The doc examples of the Windows-only files (`*windows.rs`: the examples of the shared files
# already run on Linux). rustdoc waits for each example's output to close, and the Wine services
# that the first process of a prefix starts keep it open: so Wine is booted before the first
# example, in a copy of the recipe (the recipe itself runs cargo first).
patched=$CARGO_TARGET_DIR/test-under-wine-booted.sh
sed '/wineserver64 -p/a /usr/lib/wine/wine64 cmd /c echo booted >/dev/null 2>\&1 </dev/null || true' \
  "$recipe" > "$patched"
cp "$(dirname "$recipe")/bcryptprimitives.c" "$CARGO_TARGET_DIR/"
grep -q "wine64 cmd /c echo booted" "$patched"
bash "$patched" -p ipckit --features tokio --doc windows.rs
# The smoke test of the CLI, in the same target directory and Wine prefix.
IPCKIT_WINDOWS_TARGET_DIR=$CARGO_TARGET_DIR scripts/windows/cli-smoke.sh
