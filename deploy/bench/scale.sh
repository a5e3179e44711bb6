#!/usr/bin/env bash
# Does the control plane's cost per write grow with what it holds? A 3-server cluster on this
# machine's loopback, 1,000 simulated nodes in five regions (registered and heartbeating
# through the agent API, running nothing), grown to 100 and then 10,000 apps of 10 replicas
# (100,000 instances). At each size `meridian-bench scale` takes the same figures: app creates
# per second (closed loop, 64 clients), the time from a deploy accepted to the first instance
# of the new release assigned (one reconcile round), and the leader's resident memory.
#
#   deploy/bench/scale.sh
#
# Knobs (environment):
#   BENCH_NODES=1000          simulated nodes
#   BENCH_STEPS=100,10000     apps held at each step
#   BENCH_REPLICAS=10         replicas per grown app
#   BENCH_SECONDS=5           measured seconds of creates at each step
#   BENCH_COMPARE=REV         also run the servers built from git revision REV, in the same
#                             script and with the same load generator, and print both tables
#                             (BENCH_COMPARE_BIN=FILE uses a meridian binary already built
#                             from REV)
#   BENCH_LOGS=DIR            keep the servers' logs here
#
# Everything listens on 127.0.0.1, lives in a fresh temp dir, and is stopped (the dir deleted)
# when the script exits.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=deploy/bench/lib.sh
. "$root/deploy/bench/lib.sh"
target="${CARGO_TARGET_DIR:-$root/target}"
nodes=${BENCH_NODES:-1000}
steps=${BENCH_STEPS:-100,10000}
replicas=${BENCH_REPLICAS:-10}
secs=${BENCH_SECONDS:-5}

work=$(mktemp -d "${TMPDIR:-/tmp}/meridian-scale.XXXXXX")
pids=()
cleanup() {
  stop_all
  if [ -n "${BENCH_LOGS:-}" ]; then mkdir -p "$BENCH_LOGS" && cp "$work"/*.log "$BENCH_LOGS"/ 2>/dev/null || true; fi
  if [ -n "${compare_tree:-}" ]; then git -C "$root" worktree remove --force "$compare_tree" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# run_scale BINARY LABEL: 3 servers from BINARY, the scale benchmark against them.
run_scale() {
  local meridian=$1 label=$2
  local n port start urls="" pidmap="$work/$2.pids"
  head -c 32 /dev/urandom | base64 | tr -d '\n=/+' >"$work/$label-secret"
  chmod 600 "$work/$label-secret"
  local ports=()
  : >"$pidmap"
  read -r -a plain <<<"$(plain_http_flag "$meridian")"
  for n in 1 2 3; do
    port=$(free_port)
    ports+=("$port")
    if [ "$n" = 1 ]; then start=(--bootstrap); else start=(--join "http://127.0.0.1:${ports[0]}"); fi
    "$meridian" server --node-id "$n" --listen "127.0.0.1:$port" --data-dir "$work/$label-$n" \
      --cluster-secret-file "$work/$label-secret" --node-grace-ms 600000 "${plain[@]}" "${start[@]}" \
      >"$work/$label-$n.log" 2>&1 &
    pids+=($!)
    echo "http://127.0.0.1:$port=$!" >>"$pidmap"
    wait_until 100 0.1 curl -fsS "http://127.0.0.1:$port/v1/health" ||
      { say "server $label-$n did not become healthy:"; tail -20 "$work/$label-$n.log"; exit 1; }
    urls="$urls${urls:+,}http://127.0.0.1:$port"
  done
  voters() { curl -fsS "http://127.0.0.1:${ports[0]}/metrics" | awk '$1 == "meridian_raft_voters" {print $2}'; }
  all_voters() { [ "$(voters)" = 3 ]; }
  wait_until 150 0.2 all_voters || { say "the cluster did not reach 3 voters"; exit 1; }
  local token
  token=$(curl -fsS -X POST "http://127.0.0.1:${ports[0]}/v1/auth/bootstrap" |
    sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
  [ -n "$token" ] || { say "bootstrap returned no token"; exit 1; }
  say "[$label] servers up: $urls"
  timeout 1800 "$bench" scale --urls "$urls" --token "$token" --nodes "$nodes" --steps "$steps" \
    --replicas "$replicas" --seconds "$secs" --pids "$pidmap" | sed "s/^/[$label] /"
  stop_all
}

hr
say "machine: $(nproc) cores, $(uname -sr), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
say "building meridian and meridian-bench (release)..."
(cd "$root" && cargo build --release -q -p meridian-cli -p meridian-bench)
bench="$target/release/meridian-bench"
cp "$target/release/meridian" "$work/meridian-head"
head_rev=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo "?")
compare_build

hr
run_scale "$work/meridian-head" "$head_rev"
if [ -n "${BENCH_COMPARE:-}" ]; then
  hr
  run_scale "$work/meridian-base" "$compare_rev"
fi
hr
