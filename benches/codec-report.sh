#!/usr/bin/env bash
# Runs the codec benchmarks RUNS times (default 3) and prints the median time per benchmark and
# gatekit's speed ratio against tokio-util's LengthDelimitedCodec (ratio > 1: gatekit is faster).
# Usage: bash benches/codec-report.sh [RUNS] [criterion filter]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-3}"
filter="${2:-}"
# Criterion writes under the cargo target directory.
results="${CARGO_TARGET_DIR:-target}/criterion"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cargo bench -p gatekit-benches --bench codec --no-run >/dev/null 2>&1
for i in $(seq 1 "$runs"); do
  echo "run $i/$runs..." >&2
  cargo bench -p gatekit-benches --bench codec -- --noplot $filter >/dev/null 2>&1
  for f in "$results"/*/*/new/estimates.json; do
    name=$(echo "$f" | sed -E 's#.*/criterion/([^/]+)/([^/]+)/new/estimates.json#\1 \2#')
    python3 -c 'import json,sys; print(sys.argv[1], json.load(open(sys.argv[2]))["median"]["point_estimate"])' "$name" "$f" >> "$out/samples"
  done
done
python3 - "$out/samples" "$runs" <<'PY'
import sys, statistics, collections
samples = collections.defaultdict(list)
for line in open(sys.argv[1]):
    group, fn, ns = line.split()
    samples[(group, fn)].append(float(ns))
groups = sorted({g for g, _ in samples}, key=lambda g: (g.split('_')[0], int(''.join(c for c in g.split('_')[1] if c.isdigit()) or 0)) if '_' in g else (g, 0))
def fmt(ns):
    return f"{ns/1000:.1f} µs" if ns < 1e6 else f"{ns/1e6:.2f} ms"
print(f"medians over {sys.argv[2]} runs (criterion median of each run, then the median of those)\n")
print("| benchmark | tokio-util LDC | gatekit native | gatekit / LDC speed |")
print("|---|---|---|---|")
for g in groups:
    ldc = samples.get((g, "tokio_ldc")); nat = samples.get((g, "gatekit_native"))
    if not ldc or not nat: continue
    l, n = statistics.median(ldc), statistics.median(nat)
    print(f"| {g.replace('_', '/')} | {fmt(l)} | {fmt(n)} | {l/n:.2f}× |")
PY
