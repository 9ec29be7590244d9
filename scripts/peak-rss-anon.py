#!/usr/bin/env python3
"""Runs a command and reports its peak anonymous memory (RssAnon) and resident set (VmRSS).

usage: scripts/peak-rss-anon.py [--interval-ms 20] [--json-out FILE] -- CMD ARGS...

Every interval, reads /proc/PID/status of CMD and of all its descendants (found through
/proc/PID/task/*/children, else by scanning /proc for parent ids) and sums their RssAnon and
VmRSS; the peaks are the largest sums seen. RssAnon leaves out file-backed pages (a memory-mapped
model's weights do not count) and shared memory. When CMD ends, prints one JSON line on stderr:

  {"peak_rss_anon_bytes": N, "peak_vm_rss_bytes": N, "wall_s": S, "rc": RC,
   "hwm_rss_bytes": N, "samples": N, "interval_ms": MS, "command": [...]}

hwm_rss_bytes is the kernel's own high-water mark of the largest single process's RSS
(getrusage RUSAGE_CHILDREN ru_maxrss; file pages included), which catches a peak shorter than
the interval. --json-out FILE also writes the object to FILE (via a temporary file and rename).
Exits with CMD's status (128 + N when a signal N ended it; rc and "signal" in the JSON say so).
SIGINT and SIGTERM are passed on to CMD. A peak shorter than the interval can be missed: the
figures are a lower bound of the true peak, exact to within what one interval can allocate.
Pages two processes share (right after a fork, before exec) count once per process.
"""
import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import time


def status_kib(pid):
    """(RssAnon, VmRSS) of a process in KiB, or None when it is gone (or a zombie: no such lines)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            text = f.read()
    except OSError:
        return None
    anon = rss = None
    for line in text.split(b"\n"):
        if line.startswith(b"RssAnon:"):
            anon = int(line.split()[1])
        elif line.startswith(b"VmRSS:"):
            rss = int(line.split()[1])
    if anon is None or rss is None:
        return None
    return anon, rss


def children_via_task(pid):
    """The direct children of pid, from /proc/PID/task/*/children (None when unsupported)."""
    result = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                result += [int(x) for x in f.read().split()]
        except FileNotFoundError:
            return None
        except OSError:
            continue
    return result


def parent_map():
    """{pid: ppid} of every process, from /proc/*/stat."""
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
            # The command name is in parentheses and may hold spaces: parse after the last ')'.
            fields = stat[stat.rindex(b")") + 2:].split()
            parents[int(entry)] = int(fields[1])
        except (OSError, ValueError, IndexError):
            continue
    return parents


def process_tree(root):
    """root and all its descendants."""
    found, stack = [], [root]
    parents = None
    while stack:
        pid = stack.pop()
        found.append(pid)
        kids = children_via_task(pid)
        if kids is None:
            if parents is None:
                parents = parent_map()
            kids = [p for p, pp in parents.items() if pp == pid]
        stack += [k for k in kids if k not in found]
    return found


def write_atomically(path, text):
    directory = os.path.dirname(os.path.abspath(path))
    temporary = os.path.join(directory, f".{os.path.basename(path)}.tmp-{os.getpid()}")
    with open(temporary, "w") as f:
        f.write(text)
    os.replace(temporary, path)


def main():
    argv = sys.argv[1:]
    if "--" not in argv:
        print(__doc__, file=sys.stderr)
        print("peak-rss-anon: give the command after --", file=sys.stderr)
        sys.exit(2)
    split = argv.index("--")
    parser = argparse.ArgumentParser(usage="peak-rss-anon.py [--interval-ms 20] [--json-out FILE] -- CMD ARGS...")
    parser.add_argument("--interval-ms", type=float, default=20.0)
    parser.add_argument("--json-out")
    args = parser.parse_args(argv[:split])
    command = argv[split + 1:]
    if not command:
        parser.error("no command after --")
    if not args.interval_ms > 0:
        parser.error("--interval-ms must be positive")

    start = time.monotonic()
    try:
        child = subprocess.Popen(command)
    except OSError as error:
        print(f"peak-rss-anon: cannot run {command[0]}: {error.strerror}", file=sys.stderr)
        sys.exit(127)

    def forward(signum, _frame):
        try:
            child.send_signal(signum)
        except OSError:
            pass

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)

    peak_anon = peak_rss = samples = 0
    interval = args.interval_ms / 1000.0
    while child.poll() is None:
        anon = rss = 0
        for pid in process_tree(child.pid):
            values = status_kib(pid)
            if values:
                anon += values[0]
                rss += values[1]
        peak_anon = max(peak_anon, anon)
        peak_rss = max(peak_rss, rss)
        samples += 1
        time.sleep(interval)
    wall = time.monotonic() - start
    code = child.returncode
    result = {"peak_rss_anon_bytes": peak_anon * 1024, "peak_vm_rss_bytes": peak_rss * 1024, "wall_s": round(wall, 3),
              "rc": code if code >= 0 else 128 - code,
              "hwm_rss_bytes": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
              "samples": samples, "interval_ms": args.interval_ms, "command": command}
    if code < 0:
        result["signal"] = -code
    line = json.dumps(result)
    print(line, file=sys.stderr, flush=True)
    if args.json_out:
        write_atomically(args.json_out, line + "\n")
    sys.exit(result["rc"])


if __name__ == "__main__":
    main()
