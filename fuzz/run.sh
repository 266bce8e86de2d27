#!/usr/bin/env bash
# Build every fuzz target, run each for a bounded time, print one line per
# target, and exit non-zero if any of them found a crash, a hang (timeout),
# an out-of-memory or a leak.
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET defaults to 60; TARGET defaults to all of them. One
# process per target (one core). Corpora grow in fuzz/corpus/<target>,
# hand-made seeds are read from fuzz/seeds/<target> (see seeds/gen.py),
# findings land in fuzz/artifacts/<target>/, logs in fuzz/target/run-logs/.
# Extra libFuzzer flags may be passed in FUZZ_FLAGS.
set -u
cd "$(dirname "$0")"

secs=${1:-60}
[ $# -gt 0 ] && shift
if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

mkdir -p target
if ! cargo +nightly fuzz build >target/build.log 2>&1; then
    tail -n 30 target/build.log
    echo "build failed (full log: fuzz/target/build.log)"
    exit 2
fi

triple=$(rustc +nightly -vV | sed -n 's/^host: //p')
bin=target/$triple/release
logs=target/run-logs
mkdir -p "$logs"

failed=0
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    before=$(ls "artifacts/$t" | wc -l)
    seeds=()
    [ -d "seeds/$t" ] && seeds=("seeds/$t")
    # Leak checks only where no server threads run: elsewhere LeakSanitizer
    # reports the buffers of threads being started or torn down at the
    # moment it looks (not reproducible), and at exit those of the servers
    # the targets keep for their lifetime; a real per-connection leak shows
    # as growth against -rss_limit_mb instead.
    leaks=0
    [ "$t" = ring ] && leaks=1
    # -timeout: one case running longer is a hang. -malloc_limit_mb: no
    # case may allocate what a hostile length announces (limits under test
    # are at most a few KiB; 256 MiB is far above any honest need).
    # shellcheck disable=SC2086
    ASAN_OPTIONS="detect_odr_violation=0:detect_leaks=$leaks${ASAN_OPTIONS:+:$ASAN_OPTIONS}" \
        "$bin/$t" "corpus/$t" "${seeds[@]}" \
        -detect_leaks=$leaks \
        -dict=dict/ipckit.dict \
        -max_total_time="$secs" \
        -timeout=30 \
        -rss_limit_mb=2048 \
        -malloc_limit_mb=256 \
        -artifact_prefix="artifacts/$t/" \
        -print_final_stats=1 \
        ${FUZZ_FLAGS:-} >"$logs/$t.log" 2>&1
    rc=$?
    after=$(ls "artifacts/$t" | wc -l)
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$t.log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$logs/$t.log" | tail -n 1)
    corpus=$(ls "corpus/$t" | wc -l)
    if [ "$rc" -eq 0 ] && [ "$after" -eq "$before" ]; then
        verdict=ok
    else
        verdict="FAILED (exit $rc; $((after - before)) new artifact(s) in fuzz/artifacts/$t; log fuzz/$logs/$t.log)"
        failed=1
    fi
    printf '%-18s %4ss  %9s runs  %6s exec/s  corpus %5s  %s\n' \
        "$t" "$secs" "${runs:-?}" "${rate:-?}" "$corpus" "$verdict"
done
exit $failed
