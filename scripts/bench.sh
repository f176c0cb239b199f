#!/usr/bin/env bash
# Runs every benchmark in BIN_DIR (bench_* executables) and prints their reports.
# Usage: scripts/bench.sh BIN_DIR
set -euo pipefail
bin=${1:?usage: bench.sh BIN_DIR}
shopt -s nullglob
for b in "$bin"/bench_*; do
  echo "== $(basename "$b")"
  "$b"
done
