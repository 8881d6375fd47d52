#!/usr/bin/env bash
# Simulation speed: `gatekit run --scenario steady --mode sim` with 10,000 and 100,000 clients
# (10 s of virtual time each), RUNS times each (default 3), in turn; prints every run and the
# median events per second and peak memory per client count.
# Usage: bash benches/sim-rate.sh [RUNS] [CLIENT COUNTS...]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-3}"
shift || true
counts=("$@")
[ ${#counts[@]} -eq 0 ] && counts=(10000 100000)
cargo build --release -p gatekit-harness >/dev/null 2>&1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for i in $(seq 1 "$runs"); do
  for n in "${counts[@]}"; do
    /usr/bin/time -f "maxrss_kib %M" ./target/release/gatekit run --scenario steady --mode sim \
      --clients "$n" --duration 10s >/dev/null 2>"$out/err" || { cat "$out/err" >&2; exit 1; }
    line=$(grep '^sim: ' "$out/err")
    rss=$(grep '^maxrss_kib ' "$out/err" | awk '{print $2}')
    echo "run $i/$runs, $n clients: ${line#sim: }, peak RSS $((rss / 1024)) MiB" >&2
    events=$(echo "$line" | awk '{print $2}')
    wall=$(echo "$line" | awk '{print $5}')
    echo "$n $events $wall $rss" >> "$out/samples"
  done
done
python3 - "$out/samples" "$runs" <<'PY'
import sys, statistics, collections
s = collections.defaultdict(list)
for line in open(sys.argv[1]):
    n, events, wall, rss = line.split()
    s[int(n)].append((int(events), float(wall), int(rss)))
print(f"medians over {sys.argv[2]} runs (steady scenario, 10 s virtual time)\n")
print("| clients | events | wall time | events/s | peak RSS |")
print("|---|---|---|---|---|")
for n in sorted(s):
    runs = s[n]
    rate = statistics.median(e / w for e, w, _ in runs)
    print(f"| {n:,} | {statistics.median(e for e, _, _ in runs)/1e6:.1f} M | "
          f"{statistics.median(w for _, w, _ in runs):.1f} s | {rate/1e3:.0f} k | "
          f"{statistics.median(r for _, _, r in runs)/1024:.0f} MiB |")
PY
