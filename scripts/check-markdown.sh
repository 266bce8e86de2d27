#!/bin/sh
# Check the project's markdown: every code fence is closed, and every
# relative link (and image) points at a file or directory that exists.
#
#   scripts/check-markdown.sh            # README.md, docs/*.md, fuzz/README.md
#   scripts/check-markdown.sh FILE...    # just these
#
# Exits non-zero, naming each problem as FILE:LINE: WHAT, if any is found.
# Links to a web address (scheme://), mailto: or an anchor in the same
# file (#...) are not followed; the anchor part of a relative link is
# dropped before the file is looked up.
set -eu

cd "$(dirname "$0")/.."
if [ "$#" -eq 0 ]; then
    set -- README.md docs/*.md fuzz/README.md
fi

status=0
for f in "$@"; do
    if [ ! -f "$f" ]; then
        echo "$f: no such file" >&2
        status=1
        continue
    fi
    awk -v file="$f" -v dir="$(dirname "$f")" '
        function check_target(t, line,    path, cmd) {
            sub(/^</, "", t); sub(/>$/, "", t)
            sub(/[ \t].*$/, "", t)                # drop a "title"
            if (t == "" || t ~ /^#/ || t ~ /^[A-Za-z][A-Za-z0-9+.-]*:/) return
            sub(/#.*$/, "", t)
            sub(/\?.*$/, "", t)
            if (t ~ /^\//) path = "." t; else path = dir "/" t
            cmd = "test -e \"" path "\""
            if (system(cmd) != 0) {
                printf "%s:%d: link to %s, which does not exist\n", file, line, t > "/dev/stderr"
                bad = 1
            }
        }
        {
            if (!infence && match($0, /^ ? ? ?(```+|~~~+)/)) {
                fence = substr($0, RSTART, RLENGTH); gsub(/ /, "", fence)
                infence = 1; opened = NR
                next
            }
            if (infence) {
                if (match($0, /^ ? ? ?(```+|~~~+)[ \t]*$/)) {
                    close_ = substr($0, RSTART, RLENGTH); gsub(/[ \t]/, "", close_)
                    if (substr(close_, 1, 1) == substr(fence, 1, 1) && length(close_) >= length(fence))
                        infence = 0
                }
                next
            }
            line = $0
            gsub(/`[^`]*`/, "", line)               # links inside code spans are text
            # Inline links and images: [text](target) / ![alt](target).
            while (match(line, /\]\([^)]*\)/)) {
                t = substr(line, RSTART + 2, RLENGTH - 3)
                check_target(t, NR)
                line = substr(line, RSTART + RLENGTH)
            }
            # Reference definitions: [label]: target
            if (match($0, /^ ? ? ?\[[^]]+\]:[ \t]+/)) {
                t = substr($0, RSTART + RLENGTH)
                check_target(t, NR)
            }
        }
        END {
            if (infence) {
                printf "%s:%d: code fence %s opened here is never closed\n", file, opened, fence > "/dev/stderr"
                bad = 1
            }
            exit bad
        }
    ' "$f" || status=1
done
if [ "$status" -eq 0 ]; then
    echo "markdown ok: $*"
fi
exit "$status"
