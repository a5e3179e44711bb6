# Helpers shared by the benchmark scripts in this folder; sourced, not run. The caller sets
# `pids` (processes to stop on exit).

say() { printf '%s\n' "$*"; }
hr() { say "------------------------------------------------------------------------"; }

# Stops every process in `pids`: SIGTERM, then SIGKILL after 5 s.
stop_all() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  pids=()
}

# A loopback port nobody listens on (and not handed out before in this run), below the
# kernel's ephemeral range so no outgoing connection can be holding it either.
taken=" "
ephemeral_low=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
free_port() {
  local p lo=10000 hi=$((ephemeral_low > 12000 ? ephemeral_low : 32768))
  for _ in $(seq 1 200); do
    p=$((lo + RANDOM % (hi - lo)))
    case "$taken" in *" $p "*) continue ;; esac
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      taken="$taken$p "
      echo "$p"
      return 0
    fi
  done
  say "no free port found" >&2
  return 1
}

wait_until() { # wait_until TRIES DELAY COMMAND...: retry a check, bounded
  local tries=$1 delay=$2
  shift 2
  for _ in $(seq 1 "$tries"); do
    "$@" >/dev/null 2>&1 && return 0
    sleep "$delay"
  done
  return 1
}

# When BENCH_COMPARE=REV is set: puts a release `meridian` built from git revision REV at
# "$work/meridian-base" (BENCH_COMPARE_BIN=FILE: a binary already built from REV) and sets
# `compare_rev`. The caller sets `root`, `target` and `work`; a temporary worktree it leaves
# behind on interruption is `compare_tree`.
compare_build() {
  [ -n "${BENCH_COMPARE:-}" ] || return 0
  compare_rev=$(git -C "$root" rev-parse --short "$BENCH_COMPARE")
  if [ -n "${BENCH_COMPARE_BIN:-}" ]; then
    cp "$BENCH_COMPARE_BIN" "$work/meridian-base"
    return 0
  fi
  compare_tree="$work/tree-$compare_rev"
  say "building meridian at $compare_rev (release) for comparison..."
  git -C "$root" worktree add --detach -q "$compare_tree" "$compare_rev"
  (cd "$compare_tree" && CARGO_TARGET_DIR="$target/compare" cargo build --release -q -p meridian-cli)
  cp "$target/compare/release/meridian" "$work/meridian-base"
  git -C "$root" worktree remove --force "$compare_tree"
  compare_tree=""
}

# `--insecure-plain-http` when the `meridian` binary $1 has it (servers built before TLS do not
# know the flag and serve plain HTTP anyway): the benchmarks drive servers over plain HTTP.
plain_http_flag() {
  local help
  help=$("$1" server --help 2>/dev/null || true)
  case "$help" in
    *--insecure-plain-http*) printf '%s' --insecure-plain-http ;;
  esac
}
