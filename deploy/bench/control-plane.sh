#!/usr/bin/env bash
# Replicated write throughput and latency of a 3-server Meridian control plane, beside a
# 3-member etcd cluster driven the same way, on this machine's loopback interface; plus the
# idle memory of one Meridian server. Everything it starts listens on 127.0.0.1 only, lives in
# a fresh temp dir, and is stopped (and the dir deleted) when the script exits.
#
#   deploy/bench/control-plane.sh
#
# Knobs (environment):
#   BENCH_LEVELS="1 16 64 256"  closed-loop concurrency levels
#   BENCH_SECONDS=10            measured seconds per run (after BENCH_WARMUP=2)
#   BENCH_ALL_LEVEL=64          concurrency of the extra run spread over all servers
#   BENCH_CHECK_PERF="l s"      etcdctl check perf loads to run (60 s each; "" for none)
#   BENCH_RESULTS=FILE          also keep the JSON lines of every run here
#   BENCH_NO_ETCD=1             skip etcd
#   BENCH_LOGS=DIR              keep the servers' logs here
#   BENCH_COMPARE=REV           also run the servers built from git revision REV, in the same
#                               script, as one more column of the table (BENCH_COMPARE_BIN=FILE
#                               uses a meridian binary already built from REV)
#
# Both systems are driven by meridian-bench over HTTP/1.1 + JSON: Meridian with POST /v1/apps,
# etcd with POST /v3/kv/put on its gRPC-JSON gateway, a fresh key per request and a value the
# size of the app body. The only etcd load tool Debian ships is `etcdctl check perf`, whose
# profiles are rate-limited, gRPC and fixed at 500 clients for `l`; it runs too, as the anchor.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=deploy/bench/lib.sh
. "$root/deploy/bench/lib.sh"
target="${CARGO_TARGET_DIR:-$root/target}"
read -r -a levels <<<"${BENCH_LEVELS:-1 16 64 256}"
secs=${BENCH_SECONDS:-10}
warmup=${BENCH_WARMUP:-2}
all_level=${BENCH_ALL_LEVEL:-64}
read -r -a perf_loads <<<"${BENCH_CHECK_PERF-l s}"
# etcd 3.4.23 `etcdctl check perf --load=l`, measured earlier on this kind of machine.
anchor_check_perf_l=3649

work=$(mktemp -d "${TMPDIR:-/tmp}/meridian-bench.XXXXXX")
results="$work/results.jsonl"
touch "$results"
pids=()

cleanup() {
  stop_all
  if [ -n "${compare_tree:-}" ]; then git -C "$root" worktree remove --force "$compare_tree" 2>/dev/null || true; fi
  if [ -n "${BENCH_RESULTS:-}" ]; then cp "$results" "$BENCH_RESULTS" 2>/dev/null || true; fi
  if [ -n "${BENCH_LOGS:-}" ]; then mkdir -p "$BENCH_LOGS" && cp "$work"/*.log "$BENCH_LOGS"/ 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rss_mb() { awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/$1/status" 2>/dev/null || echo "?"; }

# ---------------------------------------------------------------------------------- machine
hr
say "machine: $(nproc) cores, $(uname -sr), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
say "temp dir: $work ($(stat -f -c %T "$work") filesystem)"
dd_out=$(dd if=/dev/zero of="$work/dsync-probe" bs=4k count=1000 oflag=dsync 2>&1 | tail -1)
rm -f "$work/dsync-probe"
dd_secs=$(awk '{for (i = 1; i <= NF; i++) if ($i ~ /^s,?$/) print $(i-1)}' <<<"$dd_out" | head -1)
say "fsync cost: dd bs=4k count=1000 oflag=dsync: $dd_out"
[ -n "$dd_secs" ] && say "  => $(awk -v s="$dd_secs" 'BEGIN {printf "%.3f ms per synchronous 4 KiB write, a floor of ~%.0f durable commits/s for one writer", s, 1000 / s}')"

# ------------------------------------------------------------------------------------ build
hr
say "building meridian and meridian-bench (release)..."
(cd "$root" && cargo build --release -q -p meridian-cli -p meridian-bench)
bench="$target/release/meridian-bench"
cp "$target/release/meridian" "$work/meridian-head"
head_rev=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo "?")
compare_build

# Lets the kernel write out what the build or the cluster before left dirty (a release build
# alone leaves hundreds of megabytes), so the next cluster's fsyncs do not queue behind it.
settle() {
  sync
  sleep 2
}

# run_meridian BINARY SYSTEM: 3 servers from BINARY, the levels, memory; results as SYSTEM.
run_meridian() {
local meridian=$1 system=$2 before
before=$(wc -l <"$results")
settle
# ------------------------------------------------------------------------------- meridian up
hr
say "starting 3 meridian servers ($system)..."
head -c 32 /dev/urandom | base64 | tr -d '\n=/+' >"$work/cluster-secret"
chmod 600 "$work/cluster-secret"
mports=()
mpids=()
read -r -a plain <<<"$(plain_http_flag "$meridian")"
for n in 1 2 3; do
  port=$(free_port)
  mports+=("$port")
  if [ "$n" = 1 ]; then start=(--bootstrap); else start=(--join "http://127.0.0.1:${mports[0]}"); fi
  "$meridian" server --node-id "$n" --listen "127.0.0.1:$port" --data-dir "$work/$system-$n" \
    --cluster-secret-file "$work/cluster-secret" "${plain[@]}" "${start[@]}" >"$work/$system-$n.log" 2>&1 &
  pids+=($!)
  mpids+=($!)
  wait_until 100 0.1 curl -fsS "http://127.0.0.1:$port/v1/health" ||
    { say "meridian $n did not become healthy:"; tail -20 "$work/$system-$n.log"; exit 1; }
done
voters() { curl -fsS "http://127.0.0.1:${mports[0]}/metrics" | awk '$1 == "meridian_raft_voters" {print $2}'; }
three_voters() { [ "$(voters)" = 3 ]; }
wait_until 150 0.2 three_voters || { say "the cluster did not reach 3 voters"; exit 1; }
token=$(curl -fsS -X POST "http://127.0.0.1:${mports[0]}/v1/auth/bootstrap" |
  sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
[ -n "$token" ] || { say "bootstrap returned no token"; exit 1; }
murls=$(printf 'http://127.0.0.1:%s,' "${mports[@]}")
murls=${murls%,}

# Which server leads now (index into mports), and the Raft term, by their /metrics.
find_leader() {
  local i metrics
  leader_idx=""
  for i in 0 1 2; do
    metrics=$(curl -fsS "http://127.0.0.1:${mports[$i]}/metrics" || true)
    if grep -qx 'meridian_raft_is_leader 1' <<<"$metrics"; then
      leader_idx=$i
      term=$(awk '$1 == "meridian_raft_term" {print $2}' <<<"$metrics")
    fi
  done
  [ -n "$leader_idx" ] || { say "no meridian leader found"; exit 1; }
  follower_idx=$(((leader_idx + 1) % 3))
}
find_leader
start_term=$term
say "meridian up: ${murls} (leader: node $((leader_idx + 1)), term $term)"

sleep 5
m_rss_start_leader=$(rss_mb "${mpids[$leader_idx]}")
m_rss_start_follower=$(rss_mb "${mpids[$follower_idx]}")
say "idle RSS after start: leader ${m_rss_start_leader} MB, follower ${m_rss_start_follower} MB"

run_bench() { # run_bench MODE TARGET CONCURRENCY URLS [extra args]
  local mode=$1 tgt=$2 c=$3 urls=$4 line
  shift 4
  line=$(timeout $((secs + warmup + 60)) "$bench" "$mode" --urls "$urls" --concurrency "$c" \
    --duration "$secs" --warmup "$warmup" --target "$tgt" --json "$@" 2>"$work/bench.err") ||
    { say "  $mode c=$c failed:"; cat "$work/bench.err"; return 0; }
  echo "$line" >>"$results"
  head -3 "$work/bench.err" | sed 's/^/  /'
  say "  $mode target=$tgt c=$c: $line"
}

say "meridian: POST /v1/apps, closed loop, ${secs} s per level after ${warmup} s warm-up"
for c in "${levels[@]}"; do
  run_bench creates leader "$c" "$murls" --token "$token"
done
run_bench creates all "$all_level" "$murls" --token "$token"
find_leader
elections="term $start_term -> $term"
[ "$term" = "$start_term" ] || elections="$elections: LEADERSHIP CHANGED during the runs (see server logs; BENCH_LOGS=DIR keeps them)"
say "meridian raft: $elections, leader now node $((leader_idx + 1))"

# Where the time went, from the leader's own view.
curl -fsS "http://127.0.0.1:${mports[$leader_idx]}/metrics" >"$work/leader-metrics.txt" || true
say "leader raft: $(grep -E '^meridian_raft_(last_log_index|commit_index|applied_index|term) ' "$work/leader-metrics.txt" | tr '\n' ' ')"

sleep 5
m_rss_after_leader=$(rss_mb "${mpids[$leader_idx]}")
m_rss_after_follower=$(rss_mb "${mpids[$follower_idx]}")
say "idle RSS after load: leader ${m_rss_after_leader} MB, follower ${m_rss_after_follower} MB"
m_disk=$(du -sh "$work/$system-$((leader_idx + 1))" | cut -f1)
stop_all
say "meridian stopped (leader data dir after the runs: $m_disk)"
if [ "$system" != meridian ]; then
  # Relabel this build's result lines so the table shows it as its own column.
  sed -i "$((before + 1)),\$ s/\"system\":\"meridian\"/\"system\":\"$system\"/" "$results"
fi
}

run_meridian "$work/meridian-head" meridian
head_rss=("$m_rss_start_leader" "$m_rss_after_leader" "$m_rss_start_follower" "$m_rss_after_follower")
head_elections=$elections
if [ -n "${BENCH_COMPARE:-}" ]; then
  hr
  run_meridian "$work/meridian-base" "meridian@$compare_rev"
  base_rss=("$m_rss_start_leader" "$m_rss_after_leader" "$m_rss_start_follower" "$m_rss_after_follower")
fi
m_rss_start_leader=${head_rss[0]} m_rss_after_leader=${head_rss[1]}
m_rss_start_follower=${head_rss[2]} m_rss_after_follower=${head_rss[3]}
elections=$head_elections

# ------------------------------------------------------------------------------------ etcd
e_rss_start="-"
e_rss_after="-"
perf_lines=()
if [ -z "${BENCH_NO_ETCD:-}" ]; then
  hr
  if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
    say "installing etcd (Debian etcd-server, etcd-client)..."
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client >/dev/null
  fi
  export ETCDCTL_API=3
  settle
  say "$(etcd --version | head -1); starting 3 members..."
  cports=()
  pports=()
  for n in 1 2 3; do
    cports+=("$(free_port)")
    pports+=("$(free_port)")
  done
  initial=""
  for n in 1 2 3; do initial="${initial}e$n=http://127.0.0.1:${pports[$((n - 1))]},"; done
  initial=${initial%,}
  epids=()
  for n in 1 2 3; do
    cport=${cports[$((n - 1))]} pport=${pports[$((n - 1))]}
    etcd --name "e$n" --data-dir "$work/etcd-$n" \
      --listen-client-urls "http://127.0.0.1:$cport" --advertise-client-urls "http://127.0.0.1:$cport" \
      --listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
      --initial-cluster "$initial" --initial-cluster-token "bench-$$" --initial-cluster-state new \
      --logger zap --log-level warn >"$work/etcd-$n.log" 2>&1 &
    pids+=($!)
    epids+=($!)
  done
  eurls=$(printf 'http://127.0.0.1:%s,' "${cports[@]}")
  eurls=${eurls%,}
  wait_until 100 0.2 etcdctl --endpoints "$eurls" endpoint health ||
    { say "etcd did not become healthy:"; tail -20 "$work/etcd-1.log"; exit 1; }
  say "etcd up: $eurls"
  sleep 5
  e_rss_start=$(for p in "${epids[@]}"; do rss_mb "$p"; printf ' '; done)

  say "etcd: POST /v3/kv/put (gRPC-JSON gateway), closed loop, same levels"
  for c in "${levels[@]}"; do
    run_bench etcd-put leader "$c" "$eurls"
  done
  run_bench etcd-put all "$all_level" "$eurls"

  for load in "${perf_loads[@]}"; do
    say "etcdctl check perf --load=$load (gRPC, rate-limited profile, 60 s)..."
    out=$(timeout 180 etcdctl --endpoints "$eurls" check perf --load="$load" 2>&1 | tr '\r' '\n' |
      grep -E '^(PASS|FAIL|Slowest|Stddev)' || true)
    say "$out" | sed 's/^/  /'
    perf_lines+=("--load=$load: $(grep -Eo '[0-9]+ writes/s' <<<"$out" || echo '?')")
  done
  sleep 5
  e_rss_after=$(for p in "${epids[@]}"; do rss_mb "$p"; printf ' '; done)
  stop_all
  say "etcd stopped"
fi

# ---------------------------------------------------------------------------------- report
hr
say "RESULTS (closed loop, HTTP/JSON, ${secs} s per run after ${warmup} s warm-up; ratio = meridian / etcd ops/s)"
"$bench" table "$results"
say ""
say "etcdctl check perf (anchor: etcd 3.4.23 --load=l measured earlier: ${anchor_check_perf_l} writes/s)"
for l in "${perf_lines[@]}"; do say "  $l"; done
say ""
say "idle RSS (MB)            after start   after load   goal"
say "  meridian leader        ${m_rss_start_leader}          ${m_rss_after_leader}        <= 60"
say "  meridian follower      ${m_rss_start_follower}          ${m_rss_after_follower}        <= 60"
if [ -n "${BENCH_COMPARE:-}" ]; then
  say "  leader @$compare_rev       ${base_rss[0]}          ${base_rss[1]}"
  say "  follower @$compare_rev     ${base_rss[2]}          ${base_rss[3]}"
fi
say "meridian build: $head_rev (HEAD)${compare_rev:+, beside $compare_rev}"
say "  etcd members           ${e_rss_start}   ${e_rss_after}"
say "meridian raft during the runs: $elections"
say "fsync floor: ${dd_out}"
hr
