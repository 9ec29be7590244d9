#!/usr/bin/env bash
# Builds the fuzz targets if needed and runs one of them.
#
#   ./run.sh TARGET SECONDS [extra libFuzzer flags]     e.g. ./run.sh FuzzGGUF 600
#
# TARGET is FuzzSafeTensors, FuzzGGUF or FuzzJSON. New interesting inputs go to corpus/TARGET
# (seeded by make-corpus.py when missing), crashing inputs to crashes/, the full log to
# .build/logs/TARGET-<time>.log. Prints libFuzzer's final stats. JOBS (default 1) sets the
# build's parallelism.
set -euo pipefail
cd "$(dirname "$0")"

target="${1:?usage: run.sh TARGET SECONDS [libFuzzer flags]}"
seconds="${2:?usage: run.sh TARGET SECONDS [libFuzzer flags]}"
shift 2
case "$target" in FuzzSafeTensors|FuzzGGUF|FuzzJSON) ;; *) echo "run.sh: unknown target $target" >&2; exit 2 ;; esac

swift build -c release -j "${JOBS:-1}" --sanitize fuzzer -Xswiftc -parse-as-library --product "$target"
[ -d "corpus/$target" ] || python3 make-corpus.py
mkdir -p crashes .build/logs
log=".build/logs/$target-$(date +%Y%m%d-%H%M%S).log"

# The Swift runtime's backtracer would take SIGILL (a Swift trap) before libFuzzer, which then
# writes no crash input; leave the signals to libFuzzer.
export SWIFT_BACKTRACE=enable=no
set +e
".build/release/$target" "corpus/$target" \
    -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
    -print_final_stats=1 -artifact_prefix="crashes/$target-" "$@" >"$log" 2>&1
status=$?
set -e

grep -E '^#[0-9]+[[:space:]]+DONE|^stat::|^==[0-9]+==|^SUMMARY|Fatal error|artifact_prefix|Test unit written' "$log" || tail -20 "$log"
echo "log: $log  exit: $status"
exit "$status"
