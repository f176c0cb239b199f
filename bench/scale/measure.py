#!/usr/bin/env python3
"""Runs a command and reports its wall time and peak memory as one JSON line.

Samples /proc/PID/status every 50 ms: the peak of RssAnon (anonymous memory: heap, buffers),
of RssFile (file-backed pages mapped by the process: the mmapped checkpoint) and VmHWM (the
kernel's own peak of the total). Also records the child's CPU time (user + system, from
wait4), the bytes it read from storage (/proc/PID/io read_bytes: page-cache hits do not
count) and the machine's 1-minute load average at start and end, so that a wall time taken
on a shared machine can be judged. Usage: measure.py NAME OUT.jsonl -- COMMAND...
"""
import json
import os
import subprocess
import sys
import time


def read_status(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("RssAnon", "RssFile", "VmHWM"):
                    out[key] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return out


def read_io(pid):
    try:
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key == "read_bytes":
                    return int(rest)
    except OSError:
        pass
    return None


def main():
    name, out_path = sys.argv[1], sys.argv[2]
    cmd = sys.argv[sys.argv.index("--") + 1:]
    load0 = os.getloadavg()[0]
    t0 = time.monotonic()
    p = subprocess.Popen(cmd)
    peak = {"RssAnon": 0, "RssFile": 0, "VmHWM": 0}
    read_bytes = 0
    rc = None
    usage = None
    while rc is None:
        for k, v in read_status(p.pid).items():
            peak[k] = max(peak[k], v)
        rb = read_io(p.pid)
        if rb is not None:
            read_bytes = max(read_bytes, rb)
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid == p.pid:
            rc = os.waitstatus_to_exitcode(status)
            usage = ru
            break
        time.sleep(0.05)
    p.returncode = rc
    wall = time.monotonic() - t0
    cpu = usage.ru_utime + usage.ru_stime
    rec = {"tool": name, "rc": p.returncode, "wall_s": round(wall, 2),
           "cpu_s": round(cpu, 1), "read_mb": round(read_bytes / 2**20, 1),
           "load_start": round(load0, 2), "load_end": round(os.getloadavg()[0], 2),
           "peak_anon_mb": round(peak["RssAnon"] / 2**20, 1),
           "peak_file_mb": round(peak["RssFile"] / 2**20, 1),
           "vm_hwm_mb": round(peak["VmHWM"] / 2**20, 1), "cmd": " ".join(cmd)}
    with open(out_path, "a") as f:
        f.write(json.dumps(rec) + "\n")
    print(json.dumps(rec), file=sys.stderr)
    sys.exit(p.returncode)


if __name__ == "__main__":
    main()
