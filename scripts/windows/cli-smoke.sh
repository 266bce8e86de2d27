#!/usr/bin/env bash
# Smoke test of ipckit.exe under Wine: build the CLI for x86_64-pc-windows-gnu, then, in a fresh
# namespace, run real ipckit.exe processes against each other:
#   pipe:    `pipe serve NAME --echo --count 1` in the background; `pipe send NAME hello` prints hello.
#   mailslot: `slot read NAME --count 1` in the background; `slot send NAME hi`; the reader printed hi.
#   map:     `map watch NAME --count 2` in the background; `map set NAME v=1`; `map get NAME` prints
#            v=1; `map set NAME v=2`; the watcher printed v=1 then v=2.
#   service: `service demo NAME` in the background (it says `serving service 'NAME'`); `call` add,
#            compare --json (the server prints what it got), reverse --loan-file, a failing call
#            (one line on stderr); Ctrl-C stops the server with status 0 and a call then fails.
#            `ls` lists the service live while it runs, and not after Ctrl-C.
#   killed:  a `service demo` killed with SIGKILL: `ls` shows it stale, `call` fails at once
#            naming the stale record, `ls --prune` removes it.
#   Linux-only flags (`service demo --tcp`, `call tcp://...`, `call zenoh://...`): one line on
#            stderr and a non-zero status.
#   msg:     `msg listen NAME --count 3` in the background (it says `listening as 'NAME'` on
#            stderr); `msg send` (prints the data length), `msg broadcast`, `msg post`: the
#            listener printed each; `msg register` gives the same id in two processes. A second
#            listener stopped by Ctrl-C exits with status 0 and is reached no more.
#   clip:    `clip watch --count 3` in the background holds the board (as the map watcher does);
#            `clip set` text, `clip get`, `clip formats`, `clip register` (same id twice), `clip set
#            --format REGISTERED`, `clip get --format`, `clip set`: the watcher printed each change;
#            once every process let go, `clip get` still reads the last item (boards persist), and a
#            `clip set` by a process that exits is read by the next `clip get`;
#            `ls` lists the board.
#   dde:     `dde serve NAME --topic t --item x=1` in the background; `dde request`; a hot
#            `dde advise` in another process prints the values a `dde poke` and a `dde execute
#            "set x ..."` give; a refused execute fails on one line; `dde ls` lists it; Ctrl-C
#            stops it with status 0 and `dde ls` and `ls` no longer list it; `dde serve --tcp` is
#            refused (Linux only).
#   demo:    `ipckit demo` runs every step (pipe, mailslot, messages, service, map, clipboard, DDE)
#            between separate ipckit.exe processes to its last line, and removes its namespace.
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
# The same, as a command line to start in the background when the script sends it Ctrl-C: a
# function started with & runs in a subshell, which (like every background job of a script)
# ignores SIGINT; `"${ipckit_cmd[@]}" ARGS &` makes $! the pid of `timeout`, which passes SIGINT
# on to Wine, which runs the process's Ctrl-C handlers (CTRL_C_EVENT).
ipckit_cmd=(timeout 60 "$wine" "$exe" --namespace "$ns")

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

# --- service demo / call -----------------------------------------------------------------------
mkfifo "$tmp/svc.out"
# No --timeout: it serves until Ctrl-C (else `timeout` ends it at 60 s, status 124).
"${ipckit_cmd[@]}" service demo smoke/svc >"$tmp/svc.out" 2>"$tmp/svc.err" &
bg+=($!)
server=${bg[-1]}
exec 5<"$tmp/svc.out"
read -r -t 60 line <&5 || fail "service demo did not say it serves (exited or hung): $(cat "$tmp/svc.err")"
[ "$line" = "serving service 'smoke/svc'" ] || fail "service demo printed '$line'"
# Its endpoint record: `ls` lists it, live (PID is the Windows pid; no OWNER or SIZE there).
out=$(ipckit ls) || fail "ls exited with status $?"
grep -Eq '^smoke/svc +service +[0-9]+ +- +- +live$' <<<"$out" || fail "ls printed: $out"
out=$(ipckit call smoke/svc add '{"a":2,"b":40}' --timeout 30s) || fail "call add exited with status $?"
[ "$out" = 42 ] || fail "call add printed '$out', expected '42'"
# The seed's compare: the server prints what it got, and returns it modified.
out=$(ipckit call smoke/svc compare '{"red":3333.0,"blue":20.01}' --json --timeout 30s) \
  || fail "call compare --json exited with status $?"
case $out in
  '{"result":{"red":2.0,"blue":1.0},"rtt_ns":'*',"transport":"pipe"}') ;;
  *) fail "call compare --json printed '$out'" ;;
esac
read -r -t 60 line <&5 || fail "service demo printed nothing for compare"
[ "$line" = "client: red=3333.00, blue=20.01" ] || fail "service demo printed '$line' for compare"
# A loan method: bytes in, bytes out (on Windows the loan is a heap buffer sent over the pipe).
out=$(printf 'abc' | ipckit call smoke/svc reverse --loan-file - --timeout 30s) \
  || fail "call reverse --loan-file exited with status $?"
[ "$out" = cba ] || fail "call reverse --loan-file printed '$out', expected 'cba'"
# A failed call: one line on stderr, non-zero status.
if ipckit call smoke/svc add '{"a":9223372036854775807,"b":1}' --timeout 30s \
     >/dev/null 2>"$tmp/call.err"; then
  fail "call add with an overflow succeeded"
fi
[ "$(wc -l <"$tmp/call.err")" = 1 ] && grep -q overflows "$tmp/call.err" \
  || fail "call add with an overflow said: $(cat "$tmp/call.err")"
# Ctrl-C (Wine turns SIGINT into the console's Ctrl-C) stops the server cleanly, status 0.
kill -INT "$server"
wait "$server" || fail "service demo exited with status $? after Ctrl-C: $(cat "$tmp/svc.err")"
exec 5<&-
# Nothing on stderr: a process that crashed in its Ctrl-C handler (Wine says "Unhandled page
# fault ...") may still exit with status 0.
[ ! -s "$tmp/svc.err" ] || fail "service demo said on stderr: $(cat "$tmp/svc.err")"
# Gone with it: a call now finds nothing (bounded by its --timeout).
if ipckit call smoke/svc add '{"a":1,"b":1}' --timeout 1s >/dev/null 2>"$tmp/call.err"; then
  fail "call succeeded after the service stopped"
fi
grep -q "smoke/svc" "$tmp/call.err" || fail "call after the stop said: $(cat "$tmp/call.err")"
# The clean stop removed its record.
out=$(ipckit ls) || fail "ls exited with status $?"
! grep -q '^smoke/svc ' <<<"$out" || fail "ls still lists smoke/svc after its Ctrl-C: $out"
echo "cli-smoke: service demo/call: ok"

# --- a killed server: stale record, `call` fails at once, `ls --prune` removes it ---------------
mkfifo "$tmp/killed.out"
"${ipckit_cmd[@]}" service demo smoke/killed >"$tmp/killed.out" 2>/dev/null &
bg+=($!)
killed=${bg[-1]}
exec 5<"$tmp/killed.out"
read -r -t 60 line <&5 || fail "service demo smoke/killed did not say it serves"
# SIGKILL to the Windows process itself (the child of `timeout`): no cleanup runs.
wine_pid=$(pgrep -P "$killed") || fail "found no process under timeout (pid $killed)"
kill -KILL "$wine_pid"
# (Braces: bash's "Killed" notice about the job goes to /dev/null.)
{ wait "$killed"; } 2>/dev/null && fail "service demo smoke/killed exited with status 0 after SIGKILL"
exec 5<&-
out=$(ipckit ls) || fail "ls exited with status $?"
grep -Eq '^smoke/killed +service +[0-9]+ +- +- +stale$' <<<"$out" || fail "ls printed: $out"
if ipckit call smoke/killed add '{"a":1,"b":1}' --timeout 30s >/dev/null 2>"$tmp/call.err"; then
  fail "call reached a killed service"
fi
grep -q "stale" "$tmp/call.err" || fail "call of a killed service said: $(cat "$tmp/call.err")"
out=$(ipckit ls --prune) || fail "ls --prune exited with status $?"
grep -Eq '^removed smoke/killed stale service \(pid [0-9]+ is gone\)$' <<<"$out" || fail "ls --prune printed: $out"
out=$(ipckit ls) || fail "ls exited with status $?"
! grep -q '^smoke/killed ' <<<"$out" || fail "ls still lists smoke/killed after --prune: $out"
echo "cli-smoke: killed service, ls, ls --prune: ok"

# --- Linux-only flags: one line on stderr, non-zero status ------------------------------------
linux_only() {
  if ipckit "$@" >/dev/null 2>"$tmp/linux-only.err"; then
    fail "ipckit $* succeeded on Windows"
  fi
  [ "$(wc -l <"$tmp/linux-only.err")" = 1 ] || fail "ipckit $* said: $(cat "$tmp/linux-only.err")"
}
linux_only service demo smoke/tcp --tcp 127.0.0.1:0 --timeout 10s
grep -q "TCP only on Linux" "$tmp/linux-only.err" || fail "service demo --tcp said: $(cat "$tmp/linux-only.err")"
linux_only call tcp://127.0.0.1:9 add '{"a":1,"b":1}' --timeout 5s
grep -q "TCP only on Linux" "$tmp/linux-only.err" || fail "call tcp:// said: $(cat "$tmp/linux-only.err")"
linux_only call zenoh://smoke add '{"a":1,"b":1}' --timeout 5s
grep -q "Linux only" "$tmp/linux-only.err" || fail "call zenoh:// said: $(cat "$tmp/linux-only.err")"
echo "cli-smoke: Linux-only flags: ok"

# --- msg listen / send, broadcast, post, register ----------------------------------------------
mkfifo "$tmp/msg.out" "$tmp/msg.err"
ipckit msg listen smoke/win --count 3 --timeout 50s >"$tmp/msg.out" 2>"$tmp/msg.err" &
bg+=($!)
listener=${bg[-1]}
exec 6<"$tmp/msg.out" 7<"$tmp/msg.err"
read -r -t 60 line <&7 || fail "msg listen did not say it listens (exited or hung)"
[ "$line" = "listening as 'smoke/win'" ] || fail "msg listen said '$line' on stderr"
# send waits for the handler: its result is the data length.
out=$(ipckit msg send smoke/win 0x4a hello --timeout 30s) || fail "msg send exited with status $?"
[ "$out" = 5 ] || fail "msg send printed '$out', expected '5'"
read -r -t 60 line <&6 || fail "msg listen printed nothing after msg send"
[ "$line" = "0x004a hello" ] || fail "msg listen printed '$line', expected '0x004a hello'"
out=$(ipckit msg broadcast 0x401 all --timeout 30s) || fail "msg broadcast exited with status $?"
[ "$out" = "smoke/win 3" ] || fail "msg broadcast printed '$out', expected 'smoke/win 3'"
read -r -t 60 line <&6 || fail "msg listen printed nothing after msg broadcast"
[ "$line" = "0x0401 all" ] || fail "msg listen printed '$line', expected '0x0401 all'"
ipckit msg post smoke/win 0x400 posted --timeout 30s || fail "msg post exited with status $?"
read -r -t 60 line <&6 || fail "msg listen printed nothing after msg post"
[ "$line" = "0x0400 posted" ] || fail "msg listen printed '$line', expected '0x0400 posted'"
wait "$listener" || fail "msg listen exited with status $?"
exec 6<&- 7<&-
# register: one id per text in the namespace, the same in every process.
a=$(ipckit msg register Smoke.Refresh) || fail "msg register exited with status $?"
b=$(ipckit msg register Smoke.Refresh --json) || fail "msg register --json exited with status $?"
[ "$b" = "{\"text\":\"Smoke.Refresh\",\"id\":$a}" ] || fail "msg register printed '$a' then '$b'"
[ "$a" -ge $((0xC000)) ] || fail "msg register gave $a, below 0xC000"
echo "cli-smoke: msg listen/send/broadcast/post/register: ok"

# --- msg listen: Ctrl-C unregisters the receiver ------------------------------------------------
mkfifo "$tmp/msg2.err"
"${ipckit_cmd[@]}" msg listen smoke/win2 >/dev/null 2>"$tmp/msg2.err" &
bg+=($!)
listener=${bg[-1]}
exec 7<"$tmp/msg2.err"
read -r -t 60 line <&7 || fail "msg listen smoke/win2 did not say it listens"
kill -INT "$listener"
wait "$listener" || fail "msg listen exited with status $? after Ctrl-C"
# The rest of its stderr, to the end (it exited): nothing, or it crashed in its Ctrl-C handler.
IFS= read -r -d '' -t 30 line <&7 || true
[ -z "$line" ] || fail "msg listen said on stderr after Ctrl-C: $line"
exec 7<&-
if ipckit msg send smoke/win2 1 x --timeout 1s >/dev/null 2>"$tmp/send.err"; then
  fail "msg send reached smoke/win2 after its listener stopped"
fi
out=$(ipckit msg broadcast 1 x --timeout 5s) || fail "msg broadcast exited with status $?"
[ -z "$out" ] || fail "msg broadcast still reached: $out"
echo "cli-smoke: msg listen Ctrl-C: ok"

# --- clip watch (holding the board) / clip set / clip get / formats / register -----------------
# As a map, a board lives only while some process has it open: the watcher, started first,
# holds it (it says `watching board 'NAME'` on stderr once it does).
mkfifo "$tmp/clip.out" "$tmp/clip.err"
ipckit clip watch --board smoke/board --count 3 --timeout 50s >"$tmp/clip.out" 2>"$tmp/clip.err" &
bg+=($!)
watcher=${bg[-1]}
exec 4<"$tmp/clip.out" 3<"$tmp/clip.err"
read -r -t 60 line <&3 || fail "clip watch did not say it holds the board (exited or hung)"
[ "$line" = "watching board 'smoke/board'" ] || fail "clip watch said '$line' on stderr"
ipckit clip set --board smoke/board "hello board" || fail "clip set exited with status $?"
read -r -t 60 line <&4 || fail "clip watch printed no change after clip set"
[ "$line" = "1 unicode-text,text" ] || fail "clip watch printed '$line', expected '1 unicode-text,text'"
out=$(ipckit clip get --board smoke/board) || fail "clip get exited with status $?"
[ "$out" = "hello board" ] || fail "clip get printed '$out', expected 'hello board'"
out=$(ipckit clip formats --board smoke/board) || fail "clip formats exited with status $?"
[ "$out" = $'13 unicode-text\n1 text' ] || fail "clip formats printed '$out'"
out=$(ipckit ls) || fail "ls exited with status $?"
grep -Eq '^smoke/board +clipboard +[0-9]+ +- +[0-9]+ +sequence 1$' <<<"$out" || fail "ls printed: $out"
# A registered format: the same id in every process, bytes stored as they are.
id=$(ipckit clip register Smoke.Bytes) || fail "clip register exited with status $?"
[ "$id" -ge $((0xC000)) ] || fail "clip register gave $id, below 0xC000"
[ "$(ipckit clip register Smoke.Bytes)" = "$id" ] || fail "clip register gave another id the second time"
ipckit clip set --board smoke/board --format Smoke.Bytes raw-bytes || fail "clip set --format exited with status $?"
read -r -t 60 line <&4 || fail "clip watch printed no change after clip set --format"
[ "$line" = "2 Smoke.Bytes" ] || fail "clip watch printed '$line', expected '2 Smoke.Bytes'"
# The watcher still holds the board (it waits for a third change).
out=$(ipckit clip get --board smoke/board --format Smoke.Bytes) || fail "clip get --format exited with status $?"
[ "$out" = raw-bytes ] || fail "clip get --format printed '$out', expected 'raw-bytes'"
ipckit clip set --board smoke/board done || fail "clip set done exited with status $?"
read -r -t 60 line <&4 || fail "clip watch printed no change after clip set done"
[ "$line" = "3 unicode-text,text" ] || fail "clip watch printed '$line', expected '3 unicode-text,text'"
wait "$watcher" || fail "clip watch exited with status $?"
exec 3<&- 4<&-
# The watcher has exited: nothing holds the board now, yet its item is still there (the board's
# section is made over a file of the namespace), and a set by a process that exits at once is
# read by the next one.
out=$(ipckit clip get --board smoke/board) || fail "clip get after every process let go exited with status $?"
[ "$out" = "done" ] || fail "clip get after every process let go printed '$out', expected 'done'"
ipckit clip set --board smoke/kept "set and gone" || fail "clip set (no watcher) exited with status $?"
out=$(ipckit clip get --board smoke/kept) || fail "clip get of smoke/kept exited with status $?"
[ "$out" = "set and gone" ] || fail "clip get of smoke/kept printed '$out', expected 'set and gone'"
echo "cli-smoke: clip watch/set/get/formats/register, a board outliving its processes: ok"

# --- dde serve / request, poke, execute, advise, ls --------------------------------------------
mkfifo "$tmp/dde.err"
# No --timeout: it serves until Ctrl-C (else `timeout` ends it at 60 s, status 124).
"${ipckit_cmd[@]}" dde serve smoke/dde --topic t --item x=1 >/dev/null 2>"$tmp/dde.err" &
bg+=($!)
server=${bg[-1]}
exec 5<"$tmp/dde.err"
read -r -t 60 line <&5 || fail "dde serve did not say it serves (exited or hung)"
[ "$line" = "serving DDE service 'smoke/dde' (topics: t); Ctrl-C stops" ] || fail "dde serve said '$line'"
out=$(ipckit dde request smoke/dde t x --timeout 30s) || fail "dde request exited with status $?"
[ "$out" = 1 ] || fail "dde request printed '$out', expected '1'"
# A hot link in another process sees the poke and the execute.
mkfifo "$tmp/advise.out" "$tmp/advise.err"
ipckit dde advise smoke/dde t x --count 2 --timeout 50s >"$tmp/advise.out" 2>"$tmp/advise.err" &
bg+=($!)
adviser=${bg[-1]}
exec 6<"$tmp/advise.out" 7<"$tmp/advise.err"
read -r -t 60 line <&7 || fail "dde advise did not say it advises (exited or hung)"
[ "$line" = "advising on 'x' of 'smoke/dde' topic 't' (hot link)" ] || fail "dde advise said '$line'"
ipckit dde poke smoke/dde t x two --timeout 30s || fail "dde poke exited with status $?"
read -r -t 60 line <&6 || fail "dde advise printed nothing after dde poke"
[ "$line" = two ] || fail "dde advise printed '$line', expected 'two'"
ipckit dde execute smoke/dde t "set x three words" --timeout 30s || fail "dde execute exited with status $?"
read -r -t 60 line <&6 || fail "dde advise printed nothing after dde execute"
[ "$line" = "three words" ] || fail "dde advise printed '$line', expected 'three words'"
wait "$adviser" || fail "dde advise exited with status $?"
exec 6<&- 7<&-
out=$(ipckit dde request smoke/dde t x --json --timeout 30s) || fail "dde request --json exited with status $?"
[ "$out" = '{"item":"x","format":1,"value":"three words"}' ] || fail "dde request --json printed '$out'"
# A refused command: the server's reason, on one line.
if ipckit dde execute smoke/dde t reboot --timeout 30s >/dev/null 2>"$tmp/dde-exec.err"; then
  fail "dde execute reboot succeeded"
fi
[ "$(wc -l <"$tmp/dde-exec.err")" = 1 ] && grep -q "unknown command 'reboot'" "$tmp/dde-exec.err" \
  || fail "dde execute reboot said: $(cat "$tmp/dde-exec.err")"
out=$(ipckit dde ls) || fail "dde ls exited with status $?"
[ "$out" = "smoke/dde t" ] || fail "dde ls printed '$out', expected 'smoke/dde t'"
# Ctrl-C: status 0, nothing more on stderr, and the service is gone from dde ls.
kill -INT "$server"
wait "$server" || fail "dde serve exited with status $? after Ctrl-C"
IFS= read -r -d '' -t 30 line <&5 || true
[ -z "$line" ] || fail "dde serve said on stderr after Ctrl-C: $line"
exec 5<&-
out=$(ipckit dde ls) || fail "dde ls exited with status $? after the server stopped"
[ -z "$out" ] || fail "dde ls still lists '$out' after the server stopped"
out=$(ipckit ls) || fail "ls exited with status $?"
! grep -q '^smoke/dde ' <<<"$out" || fail "ls still lists smoke/dde after its Ctrl-C: $out"
linux_only dde serve smoke/tcp --topic t --tcp 127.0.0.1:0 --timeout 10s
grep -q "Linux" "$tmp/linux-only.err" || fail "dde serve --tcp said: $(cat "$tmp/linux-only.err")"
echo "cli-smoke: dde serve/request/poke/execute/advise/ls: ok"

# --- demo: the tour, every step between separate ipckit.exe processes -------------------------
# Longer than the other commands (about 10 s under Wine; each of its children is bounded at 20 s).
timeout 240 "$wine" "$exe" --namespace "$ns" demo >"$tmp/demo.out" 2>"$tmp/demo.err" \
  || fail "demo exited with status $?: $(tail -5 "$tmp/demo.out") $(cat "$tmp/demo.err")"
for step in '[pipe]' '[mailslot]' '[messages]' '[service]' '[map]' '[clipboard]' '[dde]'; do
  grep -qF "$step" "$tmp/demo.out" || fail "demo printed no $step step: $(cat "$tmp/demo.out")"
done
grep -qF "server returned red=2.00, blue=1.00" "$tmp/demo.out" || fail "demo's service step: $(cat "$tmp/demo.out")"
[ "$(tail -1 "$tmp/demo.out")" = "demo finished: every step ran between separate processes." ] \
  || fail "demo ended with: $(tail -3 "$tmp/demo.out")"
# It removed its namespace directory (inside ours) again.
! compgen -G "$tmp/ns/ipckit-demo-*" >/dev/null || fail "demo left its namespace directory"
echo "cli-smoke: demo: ok"

echo "cli-smoke: ipckit.exe passed (pipe, slot, map, service/call, ls, msg, clip, dde, demo)"
