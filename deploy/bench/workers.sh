#!/usr/bin/env bash
# Two worker-side benchmarks, printed side by side with their goals:
#
#   1. Placements committed through Raft per second on a 3-server cluster (goal >= 2,000/s).
#      `meridian-bench placements` registers simulated nodes through the agent API (they
#      heartbeat but run nothing), creates apps with many small replicas, and times from the
#      first create until `GET /v1/nodes` counts every instance as assigned.
#   2. Deploy latency: API accept -> the container answering HTTP, beside a bare `docker run`
#      of the same image on the same engine (goal: median <= 1.2x the bare one).
#      `meridian-bench deploy-latency` against 1 server and 1 real `meridian agent`, the two
#      kinds alternated run by run.
#
#   deploy/bench/workers.sh
#
# Knobs (environment):
#   BENCH_NODES=100      simulated nodes (benchmark 1)
#   BENCH_APPS=20        apps created (benchmark 1)
#   BENCH_REPLICAS=1000  replicas per app (benchmark 1)
#   BENCH_RUNS=5         measured runs of each kind (benchmark 2), after BENCH_WARMUP_RUNS=1
#   BENCH_LOGS=DIR       keep the servers' and the agent's logs here
#   BENCH_COMPARE=REV    also run benchmark 1 with the servers built from git revision REV, in
#                        the same script (BENCH_COMPARE_BIN=FILE uses a meridian binary already
#                        built from REV)
#
# Everything listens on 127.0.0.1, lives in a fresh temp dir, and is stopped (containers of its
# agent removed, the dir deleted) when the script exits.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=deploy/bench/lib.sh
. "$root/deploy/bench/lib.sh"
target="${CARGO_TARGET_DIR:-$root/target}"
nodes=${BENCH_NODES:-100}
apps=${BENCH_APPS:-20}
replicas=${BENCH_REPLICAS:-1000}
runs=${BENCH_RUNS:-5}
warmup_runs=${BENCH_WARMUP_RUNS:-1}
goal_placements=2000
goal_ratio=1.2

work=$(mktemp -d "${TMPDIR:-/tmp}/meridian-workers.XXXXXX")
pids=()
agent_name="bench$$"

remove_containers() {
  local ids
  ids=$(docker ps -aq --filter "label=meridian.node=$agent_name" 2>/dev/null || true)
  ids="$ids $(docker ps -aq --filter "label=meridian.bench=bare" 2>/dev/null || true)"
  # shellcheck disable=SC2086
  [ -z "${ids// /}" ] || docker rm -f $ids >/dev/null 2>&1 || true
}
cleanup() {
  stop_all
  remove_containers
  if [ -n "${compare_tree:-}" ]; then git -C "$root" worktree remove --force "$compare_tree" 2>/dev/null || true; fi
  if [ -n "${BENCH_LOGS:-}" ]; then mkdir -p "$BENCH_LOGS" && cp "$work"/*.log "$BENCH_LOGS"/ 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_servers N PREFIX: N servers (the first bootstraps), sets mports/murls/token/leader_url.
start_servers() {
  local count=$1 prefix=$2 n port start
  head -c 32 /dev/urandom | base64 | tr -d '\n=/+' >"$work/$prefix-secret"
  chmod 600 "$work/$prefix-secret"
  mports=()
  read -r -a plain <<<"$(plain_http_flag "$meridian")"
  for n in $(seq 1 "$count"); do
    port=$(free_port)
    mports+=("$port")
    if [ "$n" = 1 ]; then start=(--bootstrap); else start=(--join "http://127.0.0.1:${mports[0]}"); fi
    "$meridian" server --node-id "$n" --listen "127.0.0.1:$port" --data-dir "$work/$prefix-$n" \
      --cluster-secret-file "$work/$prefix-secret" --node-grace-ms 600000 "${plain[@]}" "${start[@]}" \
      >"$work/$prefix-$n.log" 2>&1 &
    pids+=($!)
    wait_until 100 0.1 curl -fsS "http://127.0.0.1:$port/v1/health" ||
      { say "server $prefix-$n did not become healthy:"; tail -20 "$work/$prefix-$n.log"; exit 1; }
  done
  voters() { curl -fsS "http://127.0.0.1:${mports[0]}/metrics" | awk '$1 == "meridian_raft_voters" {print $2}'; }
  all_voters() { [ "$(voters)" = "$count" ]; }
  wait_until 150 0.2 all_voters || { say "the cluster did not reach $count voters"; exit 1; }
  token=$(curl -fsS -X POST "http://127.0.0.1:${mports[0]}/v1/auth/bootstrap" |
    sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
  [ -n "$token" ] || { say "bootstrap returned no token"; exit 1; }
  murls=$(printf 'http://127.0.0.1:%s,' "${mports[@]}")
  murls=${murls%,}
  leader_url=""
  for port in "${mports[@]}"; do
    if curl -fsS "http://127.0.0.1:$port/metrics" | grep -qx 'meridian_raft_is_leader 1'; then
      leader_url="http://127.0.0.1:$port"
    fi
  done
  [ -n "$leader_url" ] || { say "no leader found"; exit 1; }
}

hr
say "machine: $(nproc) cores, $(uname -sr), $(docker version --format 'docker {{.Server.Version}}' 2>/dev/null || echo 'docker ?')"
say "building meridian and meridian-bench (release)..."
(cd "$root" && cargo build --release -q -p meridian-cli -p meridian-bench)
meridian="$target/release/meridian"
bench="$target/release/meridian-bench"
"$root/deploy/images/hello-image.sh" latest >/dev/null

compare_build
head_rev=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo "?")

# ------------------------------------------------------------------------------ placements
# run_placements LABEL: benchmark 1 with the servers of "$meridian"; sets placements_rate.
run_placements() {
  hr
  say "1. placements ($1): 3 servers, $nodes simulated nodes, $apps apps x $replicas replicas"
  start_servers 3 "p-$1"
  say "servers up: $murls (leader $leader_url)"
  placements_out=$(timeout 300 "$bench" placements --url "$leader_url" --token "$token" \
    --nodes "$nodes" --apps "$apps" --replicas "$replicas" 2>&1) ||
    { say "$placements_out"; say "placements failed"; exit 1; }
  say "$placements_out" | sed 's/^/  /'
  placements_rate=$(sed -n 's/.*=> \([0-9.]*\) placements\/s.*/\1/p' <<<"$placements_out" | head -1)
  grep -E '^meridian_raft_(term|last_log_index|applied_index) ' \
    <(curl -fsS "$leader_url/metrics") | tr '\n' ' ' | sed 's/^/  leader raft: /'
  say ""
  stop_all
}
base_rate=""
if [ -n "${BENCH_COMPARE:-}" ]; then
  head_meridian=$meridian
  meridian="$work/meridian-base"
  run_placements "$compare_rev"
  base_rate=$placements_rate
  meridian=$head_meridian
fi
run_placements "$head_rev"

# -------------------------------------------------------------------------- deploy latency
hr
say "2. deploy latency: 1 server, 1 meridian agent ($agent_name) on the local Docker engine"
start_servers 1 d
curl -fsS -X POST "$leader_url/v1/regions" -H "authorization: Bearer $token" \
  -H 'content-type: application/json' \
  -d '{"name":"eu-fra","country":"DE","latitude":50.1,"longitude":8.7}' >/dev/null
curl -fsS -X POST "$leader_url/v1/tokens" -H "authorization: Bearer $token" \
  -H 'content-type: application/json' -d '{"role":"agent"}' |
  sed -n 's/.*"token":"\([^"]*\)".*/\1/p' >"$work/agent.token"
chmod 600 "$work/agent.token"
RUST_LOG=info "$meridian" agent --name "$agent_name" --region eu-fra --server "$murls" \
  --token-file "$work/agent.token" --advertise-host 127.0.0.1 --heartbeat-ms 500 \
  >"$work/agent.log" 2>&1 &
pids+=($!)
node_ready() { curl -fsS "$leader_url/v1/nodes/$agent_name" -H "authorization: Bearer $token" | grep -q '"status":"ready"'; }
wait_until 100 0.2 node_ready || { say "the agent did not register:"; tail -20 "$work/agent.log"; exit 1; }
latency_out=$(timeout 300 "$bench" deploy-latency --url "$leader_url" --token "$token" \
  --runs "$runs" --warmup "$warmup_runs" 2>&1) ||
  { say "$latency_out"; say "deploy-latency failed"; exit 1; }
say "$latency_out" | sed 's/^/  /'
m_median=$(sed -n 's/.*meridian median \([0-9.]*\).*/\1/p' <<<"$latency_out" | head -1)
b_median=$(sed -n 's/.*bare docker run median \([0-9.]*\).*/\1/p' <<<"$latency_out" | head -1)
ratio=$(sed -n 's/^ratio meridian \/ bare (medians): \([0-9.]*\)x.*/\1/p' <<<"$latency_out" | head -1)
stop_all
remove_containers

# ---------------------------------------------------------------------------------- report
hr
met() { awk -v v="$1" -v g="$2" -v op="$3" 'BEGIN { if (v == "") { print "?"; exit }
  if ((op == ">=" && v + 0 >= g + 0) || (op == "<=" && v + 0 <= g + 0)) print "yes"; else print "no" }'; }
printf '%-58s %-22s %-12s %s\n' "figure" "measured" "goal" "met"
printf '%-58s %-22s %-12s %s\n' "placements committed through Raft /s (3 servers, simulated)" \
  "${placements_rate:-?}/s" ">= $goal_placements/s" "$(met "${placements_rate:-}" "$goal_placements" ">=")"
if [ -n "$base_rate" ]; then
  printf '%-58s %-22s %-12s %s\n' "  the same at $compare_rev, in this run" "${base_rate}/s" "" ""
fi
printf '%-58s %-22s %-12s %s\n' "deploy latency, API accept -> HTTP 200 (median of $runs)" \
  "${m_median:-?} ms" "" ""
printf '%-58s %-22s %-12s %s\n' "bare docker run -> HTTP 200 (median of $runs)" \
  "${b_median:-?} ms" "" ""
printf '%-58s %-22s %-12s %s\n' "deploy latency ratio meridian / bare" \
  "${ratio:-?}x" "<= ${goal_ratio}x" "$(met "${ratio:-}" "$goal_ratio" "<=")"
hr
