#!/usr/bin/env bash
# Thread Sanitizer stress run (issue 14: no data races).
#
# Builds any4 and the tests (release configuration) with -sanitize=thread in their own scratch
# folder (.build-tsan, or $TSAN_SCRATCH) and runs, under TSan:
#   ui     the TUI in tmux (Tests/CLITests/TUIStressTests): quantize-all pressed ~40 times with
#          tab switches, a format comparison and the live kernel; SIGTERM, SIGINT and SIGHUP
#          during a job. The UI processes inherit TSAN_OPTIONS. (Not the crash test: under TSan
#          a fatal signal is TSan's -- it reports "SEGV on unknown address" itself, and the Swift
#          runtime's backtracer, started from inside a signal handler, trips a TSan CHECK in clone.)
#   loops  the code worker threads run: parallelRows and the worker pool, the output error
#          (ConcurrencyTests, 10 s per stress loop), quantization, k-means, the kernels, the
#          TUI's jobs and kernel runner, one decoder test (the engine's parallel loops).
# Prints the number of TSan reports of each part and where the reports are; exits 1 if there is
# a report or a failed test, 2 if the build fails. Needs tmux for the ui part (else it is skipped).
#
#   scripts/tsan-stress.sh            # both parts (about 5 minutes on 2 cores after the build)
#   scripts/tsan-stress.sh loops      # one part
set -uo pipefail
cd "$(dirname "$0")/.."

scratch=${TSAN_SCRATCH:-.build-tsan}
logs=$(mktemp -d /tmp/any4-tsan.XXXXXX)
parts=${*:-ui loops}

echo "building with Thread Sanitizer in $scratch (log: $logs/build.txt)"
if ! swift build -c release --build-tests --sanitize=thread --scratch-path "$scratch" >"$logs/build.txt" 2>&1; then
    tail -30 "$logs/build.txt"
    exit 2
fi

filter_for() {
    case $1 in
        ui) echo 'TUIStressTests.testQuantizeAll|TUIStressTests.testSignals' ;;
        loops) echo 'ConcurrencyTests|QuantizationTests|KMeans1DTests|KernelTests|TUIStateAndViewTests|LlamaEngineTests.testIncrementalDecoding' ;;
        *) echo "unknown part $1 (ui, loops)" >&2; exit 2 ;;
    esac
}

total=0
failed=0
for part in $parts; do
    filter=$(filter_for "$part") || exit 2
    # halt_on_error=0: report every race, not only the first; each process writes its reports
    # to $logs/$part.PID. A process with reports exits with 66 (TSan's exitcode). The
    # suppressions (false positives, each explained) are in scripts/tsan.supp.
    TSAN_OPTIONS="halt_on_error=0 log_path=$logs/$part suppressions=$PWD/scripts/tsan.supp" ANY4_STRESS_SECONDS=10 \
        swift test -c release --skip-build --sanitize=thread --scratch-path "$scratch" --filter "$filter" >"$logs/$part-tests.txt" 2>&1
    status=$?
    reports=$(cat "$logs/$part".* 2>/dev/null | grep -c "WARNING: ThreadSanitizer")
    tests=$(grep -cE "^Test Case .* (passed|failed) \(" "$logs/$part-tests.txt")
    failures=$(grep -cE "^Test Case .* failed \(" "$logs/$part-tests.txt")
    skipped=$(grep -cE "skipped" "$logs/$part-tests.txt")
    echo "$part: $reports TSan reports, $tests tests, $failures failed, $skipped skipped (swift test exit $status; output: $logs/$part-tests.txt)"
    if [ "$reports" -gt 0 ]; then
        cat "$logs/$part".* | grep -A3 "WARNING: ThreadSanitizer" | grep -E "^ +#0" | sort | uniq -c | sort -rn | head -10
    fi
    total=$((total + reports))
    [ "$status" -ne 0 ] && failed=1
done

echo "TSan reports in total: $total (reports: $logs)"
[ "$total" -eq 0 ] && [ "$failed" -eq 0 ]
