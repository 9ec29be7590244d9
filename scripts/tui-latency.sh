#!/usr/bin/env bash
# Drives the TUI in a detached tmux session and reports its ANY4_TUI_TRACE figures (issue 18):
# time to first frame, key-to-frame p50/p99/max with keys sent throughout the background work,
# the longest time a job's progress stood still on screen, and how long after the quantize ended
# the model-level error (KL/ppl, or cosine) was on screen.
#
#   scripts/tui-latency.sh [--compare] [--no-eval] [--layer FILTER] [--any4 BIN] [--trace FILE] MODEL
#
# It opens MODEL, selects the first linear layer (or the first match of FILTER), quantizes it to
# any4 (tab 2, Enter), waits for its model-level error (unless --no-eval, or the model has none),
# then with --compare runs `c` (every 4-bit format) and waits for it; a key (j/k alternately)
# goes every 100 ms all along. Needs tmux. Prints the trace's summary, the job lines and each
# job's three longest waits between progress updates on screen (with the update they followed);
# --trace keeps the whole trace.
set -euo pipefail

compare=0
eval=1
keep=""
filter=""
any4="$(cd "$(dirname "$0")/.." && pwd)/.build/release/any4"
while [[ $# -gt 1 ]]; do
    case "$1" in
    --compare) compare=1 ;;
    --no-eval) eval=0 ;;
    --layer) filter="$2"; shift ;;
    --any4) any4="$2"; shift ;;
    --trace) keep="$2"; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
[[ $# -eq 1 ]] || { echo "usage: $0 [--compare] [--no-eval] [--layer FILTER] [--any4 BIN] [--trace FILE] MODEL" >&2; exit 2; }
model="$1"
command -v tmux >/dev/null || { echo "tmux is not installed" >&2; exit 2; }
[[ -x "$any4" ]] || { echo "$any4: not built (swift build -c release)" >&2; exit 2; }

session="any4-latency-$$"
work="$(mktemp -d)"
trace="$work/trace.txt"
cleanup() { tmux kill-session -t "$session" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

screen() { tmux capture-pane -t "$session" -p 2>/dev/null || true; }
# wait_for REGEX SECONDS [keys]: polls the screen; with "keys", sends j then k (down, up: the
# selection comes back) every 100 ms meanwhile.
wait_for() {
    local pattern="$1" seconds="$2" keys="${3:-}" deadline
    deadline=$(($(date +%s) + seconds))
    while (($(date +%s) < deadline)); do
        if screen | grep -Eq -- "$pattern"; then return 0; fi
        if [[ -n "$keys" ]]; then
            tmux send-keys -t "$session" j
            sleep 0.05
            tmux send-keys -t "$session" k
            sleep 0.05
        else
            sleep 0.1
        fi
    done
    echo "timed out after ${seconds}s waiting for /$pattern/; the screen:" >&2
    screen >&2
    return 1
}

tmux new-session -d -s "$session" -x 160 -y 50 \
    "env ANY4_TUI_TRACE='$trace' TERM=xterm-256color LANG=C.UTF-8 '$any4' tui '$model'; sleep 600"
wait_for "any4 explorer" 60
if [[ -n "$filter" ]]; then
    tmux send-keys -t "$session" / && tmux send-keys -t "$session" -l "$filter" && tmux send-keys -t "$session" Enter
fi
tmux send-keys -t "$session" 2
if ((eval)); then
    # The engine and the unquantized reference first (a model the engine runs loads them at start).
    wait_for "unquantized ppl|against the unquantized|model error unavailable|model error failed|model error: the (demo|engine loads)" 900 keys || true
fi
sleep 0.3
tmux send-keys -t "$session" Enter
wait_for "done: quantizing|error:" 900 keys
if ((eval)); then
    wait_for "model, this layer alone|model error unavailable|model error failed" 900 keys || true
fi
# A few more keys after it all (the frames after the figures appeared).
for _ in 1 2 3 4 5 6 7 8 9 10; do tmux send-keys -t "$session" j; sleep 0.05; tmux send-keys -t "$session" k; sleep 0.05; done
if ((compare)); then
    tmux send-keys -t "$session" c
    wait_for "comparing" 60
    wait_for "done: comparing|error:" 1800 keys
fi
tmux send-keys -t "$session" q
sleep 0.3
tmux send-keys -t "$session" y
for _ in $(seq 1 100); do [[ -s "$trace" ]] && break; sleep 0.1; done
[[ -s "$trace" ]] || { echo "no trace was written" >&2; exit 1; }

echo "model: $model"
grep -E '^(first_frame_ms|job_start_ms|job_end_ms|model_reference_ms|model_error_ms|key_to_frame_(count|p50_ms|p99_ms|max_ms)|progress_max_gap_ms)' "$trace"
echo "longest waits between progress updates (ms, the update before):"
awk '/^job_start_ms/ { t = $2; prev = $0; n = 0; job = substr($0, index($0, $3)); next }
     /^progress_ms|^job_end_ms/ { if (t != "") printf "%10.1f  %s  ←  %s\n", $2 - t, job, prev; t = $2; prev = $0 }
     /^job_end_ms/ { t = "" }' "$trace" | sort -rn | awk '{ key = $2 " " $3 " " $4; if (++seen[key] <= 3) print }' | head -6
if [[ -n "$keep" ]]; then cp "$trace" "$keep"; fi
