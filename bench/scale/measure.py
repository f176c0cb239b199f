#!/usr/bin/env python3
"""Runs a command and reports its wall time and peak memory as one JSON line.

Samples /proc/PID/status every 50 ms: the peak of RssAnon (anonymous memory: heap, buffers),
of RssFile (file-backed pages mapped by the process: the mmapped checkpoint) and VmHWM (the
kernel's own peak of the total). Usage: measure.py NAME OUT.jsonl -- COMMAND...
"""
import json
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


def main():
    name, out_path = sys.argv[1], sys.argv[2]
    cmd = sys.argv[sys.argv.index("--") + 1:]
    t0 = time.monotonic()
    p = subprocess.Popen(cmd)
    peak = {"RssAnon": 0, "RssFile": 0, "VmHWM": 0}
    while p.poll() is None:
        for k, v in read_status(p.pid).items():
            peak[k] = max(peak[k], v)
        time.sleep(0.05)
    wall = time.monotonic() - t0
    rec = {"tool": name, "rc": p.returncode, "wall_s": round(wall, 2),
           "peak_anon_mb": round(peak["RssAnon"] / 2**20, 1),
           "peak_file_mb": round(peak["RssFile"] / 2**20, 1),
           "vm_hwm_mb": round(peak["VmHWM"] / 2**20, 1), "cmd": " ".join(cmd)}
    with open(out_path, "a") as f:
        f.write(json.dumps(rec) + "\n")
    print(json.dumps(rec), file=sys.stderr)
    sys.exit(p.returncode)


if __name__ == "__main__":
    main()
