#!/usr/bin/env bash
# Edge router throughput and latency, in one go and side by side:
#   1. wrk straight at a backend (nginx answering `return 200`, one worker);
#   2. wrk through nginx as a keep-alive reverse proxy (one worker) to that backend;
#   3. wrk through `meridian router` to that backend.
# Each at saturation (-c50) and lightly loaded (-c4), -t1, DURATION seconds per run, ROUNDS
# rounds alternating the three paths; medians are printed.
#
# On a machine with two cores or more, wrk runs on core 0 and the backend and the proxy under
# test share core 1 (taskset), so the load generator does not take its CPU from the proxy
# and the proxies are compared by what they cost; MERIDIAN_BENCH_PIN=0 lets the kernel place
# everything instead.
#
# The router runs the real `meridian router` binary. Its route table (one app, one healthy
# instance: the backend) is given with --table-cache, which a router reads at start; its
# control plane is deliberately unreachable, as nothing on the request path uses it.
#
# usage: deploy/bench/router.sh [DURATION [ROUNDS]]   (default 10 s, 3 rounds)
#   MERIDIAN_ROUTER_THREADS  router threads (default 1; see BENCHMARKS.md)
#   MERIDIAN_BENCH_PIN       1 (default with two cores or more) pins as above, 0 does not
# Installs wrk and nginx-light from Debian's packages when they are missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
. deploy/bench/lib.sh

duration=${1:-10}
rounds=${2:-3}
threads=${MERIDIAN_ROUTER_THREADS:-1}
target="${CARGO_TARGET_DIR:-target}"

pin=${MERIDIAN_BENCH_PIN:-1}
[ "$(nproc)" -ge 2 ] || pin=0
on_load=() on_proxy=() layout="unpinned: the kernel places wrk, the backend and the proxy"
if [ "$pin" = 1 ]; then
  on_load=(taskset -c 0) on_proxy=(taskset -c 1)
  layout="wrk on core 0; the backend and the proxy under test share core 1"
fi

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]} (Debian packages)"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -q >/dev/null
  $sudo apt-get install -y -q "${need[@]}" >/dev/null
fi
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)

say "building meridian (release)..."
cargo build --release -q -p meridian-cli
meridian="$target/release/meridian"

work=$(mktemp -d)
pids=()
cleanup() {
  stop_all
  rm -rf "$work"
}
trap cleanup EXIT

backend=$(free_port)
proxy=$(free_port)
router=$(free_port)

cat >"$work/backend.conf" <<EOF
worker_processes 1;
pid $work/backend.pid;
error_log $work/backend.err;
daemon off;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$backend; location / { return 200 "hello\n"; } }
}
EOF
cat >"$work/proxy.conf" <<EOF
worker_processes 1;
pid $work/proxy.pid;
error_log $work/proxy.err;
daemon off;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  upstream backend { server 127.0.0.1:$backend; keepalive 64; }
  server {
    listen 127.0.0.1:$proxy;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
cat >"$work/table.json" <<EOF
{"version": 1, "apps_domain": "meridian.localhost",
 "regions": [{"name": "local", "country": "DE", "latitude": 50.11, "longitude": 8.68}],
 "jurisdictions": {}, "routers": [],
 "apps": [{"name": "bench", "residency": [], "origin_bound": [], "domains": [],
           "instances": [{"id": "b1", "node": "n1", "region": "local",
                          "address": "127.0.0.1:$backend"}]}]}
EOF
echo "not-a-real-token" >"$work/token"

"${on_proxy[@]}" "$nginx_bin" -c "$work/backend.conf" -p "$work" &
pids+=($!)
"${on_proxy[@]}" "$nginx_bin" -c "$work/proxy.conf" -p "$work" &
pids+=($!)
RUST_LOG=error "${on_proxy[@]}" "$meridian" router --region local --server http://127.0.0.1:1 \
  --token-file "$work/token" --listen "127.0.0.1:$router" --table-cache "$work/table.json" \
  --threads "$threads" &
pids+=($!)

wait_until 50 0.1 curl -fsS "http://127.0.0.1:$backend/"
wait_until 50 0.1 curl -fsS "http://127.0.0.1:$proxy/"
wait_until 50 0.1 curl -fsS -H "Host: bench.meridian.localhost" "http://127.0.0.1:$router/" ||
  { say "the router does not serve the app"; exit 1; }

# run NAME PORT CONNECTIONS: one wrk run; prints "req/s p50_ms p99_ms".
run() {
  local out rps p50 p99
  out=$("${on_load[@]}" wrk -t1 -c"$3" -d"${duration}s" --latency -H "Host: bench.meridian.localhost" \
    "http://127.0.0.1:$2/")
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  echo "$rps $(to_ms "$p50") $(to_ms "$p99")"
}

# wrk prints 812.00us, 1.23ms or 1.02s.
to_ms() {
  awk -v v="$1" 'BEGIN {
    n = v + 0
    if (v ~ /us$/) n = n / 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n = n * 1000
    printf "%.3f", n }'
}

# median of the numbers on stdin
median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

hr
say "wrk -t1, ${duration}s per run, $rounds rounds alternating the three paths (the machine's"
say "other load varies; medians over the rounds); router threads: $threads; $(nproc) cores"
say "$layout"
for c in 50 4; do
  : >"$work/direct" >"$work/nginx" >"$work/router"
  for round in $(seq 1 "$rounds"); do
    run direct "$backend" "$c" >>"$work/direct"
    run nginx "$proxy" "$c" >>"$work/nginx"
    run router "$router" "$c" >>"$work/router"
    printf '  round %s, -c%s: req/s direct %.0f  nginx %.0f  router %.0f\n' "$round" "$c" \
      "$(tail -1 "$work/direct" | cut -d' ' -f1)" "$(tail -1 "$work/nginx" | cut -d' ' -f1)" \
      "$(tail -1 "$work/router" | cut -d' ' -f1)"
  done
  for path in direct nginx router; do
    for col in 1 2 3; do
      cut -d' ' -f"$col" "$work/$path" | median >"$work/$path.$col"
    done
  done
  m() { cat "$work/$1.$2"; }
  printf '%-30s %11s %9s %9s %16s\n' "path (median), -c$c" "req/s" "p50 ms" "p99 ms" "p99 over direct"
  printf '%-30s %11.0f %9.3f %9.3f %16s\n' "direct" "$(m direct 1)" "$(m direct 2)" "$(m direct 3)" "-"
  printf '%-30s %11.0f %9.3f %9.3f %13.3f ms\n' "nginx keep-alive proxy" "$(m nginx 1)" "$(m nginx 2)" \
    "$(m nginx 3)" "$(awk -v a="$(m nginx 3)" -v b="$(m direct 3)" 'BEGIN {print a - b}')"
  printf '%-30s %11.0f %9.3f %9.3f %13.3f ms\n' "meridian router" "$(m router 1)" "$(m router 2)" \
    "$(m router 3)" "$(awk -v a="$(m router 3)" -v b="$(m direct 3)" 'BEGIN {print a - b}')"
  say "  router / nginx req/s: $(awk -v a="$(m router 1)" -v b="$(m nginx 1)" 'BEGIN {printf "%.2fx", a / b}')"
done
hr
