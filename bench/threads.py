#!/usr/bin/env python3
"""threads.py PID: what each thread of a process did, second by second.

Reads /proc/PID/task/*/schedstat (time on a CPU, time runnable but
waiting for one) every second until SIGINT, SIGTERM or the process's
end, then prints, for the threads that ran at least 0.3 s, their totals
and one line per second: "run/wait" in seconds, and the sum of the run
times (how many of the machine's cores the process used).  A pipeline of
threads shows here where it runs one stage alone, or where every stage
sleeps: what perf's samples, which count only time on a CPU, do not show.
Used by bench/profile.sh; docs/BENCHMARKS.md run AF.
"""
import os
import signal
import sys
import time

MIN_RUN_S = 0.3  # threads that ran less are left out of the table
STEP_S = 1.0


def snapshot(pid):
    out = {}
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return None
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                run_ns, wait_ns, _ = (int(x) for x in f.read().split())
        except (OSError, ValueError):
            continue  # the thread ended between the listing and the read
        out[int(tid)] = (run_ns, wait_ns)
    return out


def main():
    pid = int(sys.argv[1])
    stop = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.append(True))
    start = time.monotonic()
    prev = snapshot(pid) or {}
    rows = []
    while not stop:
        time.sleep(STEP_S)
        cur = snapshot(pid)
        if cur is None:
            break
        rows.append((time.monotonic() - start,
                     {t: ((r - prev.get(t, (0, 0))[0]) / 1e9, (w - prev.get(t, (0, 0))[1]) / 1e9)
                      for t, (r, w) in cur.items()}))
        prev = cur
    total = {}
    for _, row in rows:
        for t, (r, w) in row.items():
            run, wait = total.get(t, (0.0, 0.0))
            total[t] = (run + r, wait + w)
    busy = sorted((t for t in total if total[t][0] >= MIN_RUN_S), key=lambda t: -total[t][0])
    print("thread   run s  runnable-wait s")
    for t in busy:
        print("%-8d %5.2f  %5.2f" % (t, total[t][0], total[t][1]))
    print("per second, run/runnable-wait of the threads above, in that order; cores used")
    for at, row in rows:
        cells = " ".join("%4.2f/%4.2f" % row.get(t, (0, 0)) for t in busy)
        print("%6.1f  %s  %.2f" % (at, cells, sum(r for r, _ in row.values())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
