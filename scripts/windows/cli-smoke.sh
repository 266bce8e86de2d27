#!/usr/bin/env bash
# Smoke test of ipckit.exe under Wine: build the CLI for x86_64-pc-windows-gnu, then, in a fresh
# namespace, run real ipckit.exe processes against each other:
#   pipe:    `pipe serve NAME --echo --count 1` in the background; `pipe send NAME hello` prints hello.
#   mailslot: `slot read NAME --count 1` in the background; `slot send NAME hi`; the reader printed hi.
#   map:     `map watch NAME --count 2` in the background; `map set NAME v=1`; `map get NAME` prints
#            v=1; `map set NAME v=2`; the watcher printed v=1 then v=2.
# On Windows a map lives only while some process has it open (its section, mutex and event are
# kernel objects, gone with their last handle), so a `map get` after `map set` exits would find
# nothing. The watcher, started first, creates the map and holds it (it says `watching map 'NAME'`
# on stderr once it does) while `map set` and `map get` run; `--count 2` keeps it alive past the
# first change.
#
# Run by scripts/test-windows.sh after the library tests (which install the toolchain and Wine
# and set up the Wine prefix); on its own, run that script once first. Every wait is bounded
# (`timeout`, `read -t`); each failed check stops the script with a message naming it.
#
# Dirs: the Windows build goes to $IPCKIT_WINDOWS_TARGET_DIR (else "windows" under
# $CARGO_TARGET_DIR or target/); the Wine prefix is $IPCKIT_WINE_DIR/prefix (as in the recipe).
set -euo pipefail
cd "$(dirname "$0")/../.."
# A command that fails outside the named checks still says where.
trap 'echo "cli-smoke: FAILED at line $LINENO" >&2' ERR

fail() {
  echo "cli-smoke: FAILED: $*" >&2
  exit 1
}

export CARGO_TARGET_DIR=${IPCKIT_WINDOWS_TARGET_DIR:-$(realpath -m "${CARGO_TARGET_DIR:-target}")/windows}
# The recipe's environment (../shared/windows/test-under-wine.sh): Debian's toolchain with
# -Zbuild-std, the mingw linker, and its Wine prefix.
export PATH=/usr/bin:$PATH RUSTC_BOOTSTRAP=1
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc
export WINEPREFIX=${IPCKIT_WINE_DIR:-/tmp/ipckit-wine}/prefix WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
unset DISPLAY
wine=/usr/lib/wine/wine64
if [ ! -x "$wine" ] || ! command -v x86_64-w64-mingw32-gcc >/dev/null \
   || [ ! -f "$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll" ]; then
  fail "Wine, mingw-w64 or the Wine prefix $WINEPREFIX is not set up; run scripts/test-windows.sh"
fi

cargo build -Zbuild-std --target x86_64-pc-windows-gnu -p ipckit-cli
exe=$CARGO_TARGET_DIR/x86_64-pc-windows-gnu/debug/ipckit.exe
[ -f "$exe" ] || fail "the build left no $exe"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ipckit-cli-smoke.XXXXXX")
# The namespace: a fresh directory, as Wine names it (drive Z: is the Linux root).
ns="Z:$tmp/ns"
mkdir "$tmp/ns"
bg=()
cleanup() {
  for p in "${bg[@]}"; do
    kill "$p" 2>/dev/null || true
  done
  /usr/lib/wine/wineserver64 -k >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
# One wineserver for every ipckit.exe process (fast starts); or the one already running for
# this prefix (then -p says so and fails).
/usr/lib/wine/wineserver64 -p 2>/dev/null || true

# ipckit.exe ARGS... in the namespace, at most 60 s.
ipckit() {
  timeout 60 "$wine" "$exe" --namespace "$ns" "$@"
}

# --- pipe serve / pipe send --------------------------------------------------------------------
ipckit pipe serve smoke/pipe --echo --count 1 --timeout 50s 2>"$tmp/pipe-serve.err" &
bg+=($!)
# `pipe send` waits (within --timeout) for the server to appear.
out=$(ipckit pipe send smoke/pipe hello --timeout 30s) || fail "pipe send exited with status $?"
[ "$out" = hello ] || fail "pipe send printed '$out', expected 'hello'"
wait "${bg[-1]}" || fail "pipe serve exited with status $?: $(cat "$tmp/pipe-serve.err")"
echo "cli-smoke: pipe serve/send: ok"

# --- slot read / slot send ---------------------------------------------------------------------
ipckit slot read smoke/slot --count 1 --timeout 50s >"$tmp/slot.out" 2>"$tmp/slot.err" &
bg+=($!)
# `slot send` waits (within --timeout) for the mailslot to appear.
ipckit slot send smoke/slot hi --timeout 30s || fail "slot send exited with status $?"
wait "${bg[-1]}" || fail "slot read exited with status $?: $(cat "$tmp/slot.err")"
out=$(cat "$tmp/slot.out")
[ "$out" = hi ] || fail "slot read printed '$out', expected 'hi'"
echo "cli-smoke: slot read/send: ok"

# --- map watch (holding the map) / map set / map get -------------------------------------------
mkfifo "$tmp/watch.out" "$tmp/watch.err"
ipckit map watch smoke/map --count 2 --timeout 50s >"$tmp/watch.out" 2>"$tmp/watch.err" &
bg+=($!)
watcher=${bg[-1]}
# In the order the watcher's shell opens them (stdout, then stderr).
exec 4<"$tmp/watch.out" 3<"$tmp/watch.err"
read -r -t 60 line <&3 || fail "map watch did not say it holds the map (exited or hung)"
[ "$line" = "watching map 'smoke/map'" ] || fail "map watch said '$line' on stderr"
ipckit map set smoke/map v=1 || fail "map set v=1 exited with status $?"
read -r -t 60 line <&4 || fail "map watch printed no change after map set v=1"
[ "$line" = v=1 ] || fail "map watch printed '$line', expected 'v=1'"
# The watcher still holds the map (it waits for a second change).
out=$(ipckit map get smoke/map) || fail "map get exited with status $? (while the watcher holds the map)"
[ "$out" = v=1 ] || fail "map get printed '$out', expected 'v=1'"
ipckit map set smoke/map v=2 || fail "map set v=2 exited with status $?"
read -r -t 60 line <&4 || fail "map watch printed no change after map set v=2"
[ "$line" = v=2 ] || fail "map watch printed '$line', expected 'v=2'"
wait "$watcher" || fail "map watch exited with status $?"
exec 3<&- 4<&-
echo "cli-smoke: map watch/set/get: ok"

echo "cli-smoke: ipckit.exe passed (pipe, slot, map)"
