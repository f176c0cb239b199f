#!/usr/bin/env python3
"""Compares two output trees of `make demo` (or any moeq artefact directories) file by file.

Usage: scripts/compare-artifacts.py BASELINE_DIR NEW_DIR [--path NEW_SOURCE_DIR=BASELINE_SOURCE_DIR]

1. --path: the absolute checkout path a tool records (moeq-analyze records the default grid as
   <source dir>/configs/mint_grid.json) is replaced, byte for byte, in the new files.
2. Hashes: when a new file equals its baseline after step 1 (and this step), the sha256 of the
   new file as written is replaced by the baseline file's sha256 wherever it appears in the other
   new files (allocation.json records sensitivity.jsonl's hash, ...); repeated to a fixed point.
3. A file that is then byte-identical is "identical". A JSON/JSONL file that differs is compared
   again without the fields that legitimately change between runs: the producer block (tool,
   version, command line) and wall-clock figures ("seconds", "tokens_per_second", "*_seconds");
   an HTML/text file without timings and version strings.
Exit 1 when any file differs or is missing on one side.
"""
import hashlib
import json
import os
import re
import sys

VOLATILE_KEYS = {"producer", "seconds", "tokens_per_second"}
VOLATILE_TEXT = re.compile(rb"(\d+(\.\d+)?\s*(s|tokens/s)\b|moeq \d+\.\d+\.\d+[^<\"]*|\"version\":\s*\"[^\"]*\")")


def strip(v):
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items() if k not in VOLATILE_KEYS and not k.endswith("_seconds")}
    if isinstance(v, list):
        return [strip(x) for x in v]
    return v


def load_json_any(data):
    text = data.decode("utf-8")
    try:
        return [json.loads(text)]
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def walk(root):
    out = set()
    for r, _, names in os.walk(root):
        for n in names:
            out.add(os.path.relpath(os.path.join(r, n), root))
    return out


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--path")]
    base, new = args[0], args[1]
    paths = []
    for i, a in enumerate(sys.argv):
        if a.startswith("--path"):
            spec = a.split("=", 1)[1] if a.startswith("--path=") else sys.argv[i + 1]
            n, b = spec.split("=", 1)
            paths.append((n.encode(), b.encode()))
    args = [a for a in args if "=" not in a]
    base, new = args[0], args[1]
    files = sorted(walk(base) | walk(new))
    raw_new, raw_base = {}, {}
    for rel in files:
        if os.path.exists(os.path.join(new, rel)):
            raw_new[rel] = open(os.path.join(new, rel), "rb").read()
        if os.path.exists(os.path.join(base, rel)):
            raw_base[rel] = open(os.path.join(base, rel), "rb").read()

    def normalise(data, sha_map):
        for n, b in paths:
            data = data.replace(n, b)
        for n, b in sha_map.items():
            data = data.replace(n, b)
        return data

    sha_map = {}
    changed = True
    while changed:
        changed = False
        for rel in files:
            if rel not in raw_new or rel not in raw_base:
                continue
            sn = hashlib.sha256(raw_new[rel]).hexdigest().encode()
            sb = hashlib.sha256(raw_base[rel]).hexdigest().encode()
            if sn != sb and sn not in sha_map and normalise(raw_new[rel], sha_map) == raw_base[rel]:
                sha_map[sn] = sb
                changed = True

    counts = {"identical": 0, "normalised": 0, "stripped": 0, "different": 0}
    for rel in files:
        if rel not in raw_new or rel not in raw_base:
            print(f"MISSING    {rel} ({'new' if rel not in raw_new else 'baseline'} tree lacks it)")
            counts["different"] += 1
            continue
        a, b = raw_base[rel], raw_new[rel]
        if a == b:
            print(f"identical  {rel} ({len(a)} bytes)")
            counts["identical"] += 1
            continue
        nb = normalise(b, sha_map)
        if nb == a:
            print(f"identical  {rel} after replacing the checkout path / the hashes of such files")
            counts["normalised"] += 1
            continue
        ok, how = False, ""
        if rel.endswith((".json", ".jsonl")):
            ok = [strip(x) for x in load_json_any(a)] == [strip(x) for x in load_json_any(nb)]
            how = "producer and timing fields removed"
        elif rel.endswith((".html", ".txt", ".csv", ".svg")):
            ok = VOLATILE_TEXT.sub(b"<v>", a) == VOLATILE_TEXT.sub(b"<v>", nb)
            how = "timings and version strings removed"
        if ok:
            print(f"same       {rel} ({how})")
            counts["stripped"] += 1
        else:
            print(f"DIFFERENT  {rel}")
            counts["different"] += 1
    print(f"\n{len(files)} files: {counts['identical']} byte-identical, {counts['normalised']} byte-identical after "
          f"replacing the checkout path and dependent hashes, {counts['stripped']} identical apart from "
          f"producer/timing fields, {counts['different']} different or missing")
    return 1 if counts["different"] else 0


if __name__ == "__main__":
    sys.exit(main())
