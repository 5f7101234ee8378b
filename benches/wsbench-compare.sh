#!/usr/bin/env bash
# Measures wsplus against wsbench's bare `floor-server` in the same run, with
# the same load generator, on loopback: the numbers of docs/performance.md.
#
#   WSBENCH_DIR=/tmp/wsbench/release benches/wsbench-compare.sh [RUNS] [SCENARIO...]
#
# wsbench is not part of this repository (build it with
# `cargo build --release --manifest-path ../shared/tools/wsbench/Cargo.toml --target-dir /tmp/wsbench`).
# WSPLUS defaults to target/release/wsplus (build it with `cargo build --release`).
# Every scenario runs RUNS times (default 3) against each server, alternating,
# with a fresh server process per run; the table shows medians. Raw JSON reports
# go to $OUT (default /tmp/wsplus-compare). LIMITS=default runs wsplus with its
# default [limits] (1024 messages / 1 MiB per outbound queue) instead of the
# floor-server's 8192-message queues. Scenarios (default: all):
#   fanout100 fanout1000 fanout20k steady echo connect idle global
set -euo pipefail

RUNS=${1:-3}
shift || true
SCENARIOS=${*:-fanout100 fanout1000 fanout20k steady echo connect idle global}
WSBENCH_DIR=${WSBENCH_DIR:-/tmp/wsbench/release}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WSPLUS=${WSPLUS:-${CARGO_TARGET_DIR:-$ROOT/target}/release/wsplus}
OUT=${OUT:-/tmp/wsplus-compare}
PORT=${PORT:-18731}
ADMIN_PORT=$((PORT + 1))
MAX_S=${MAX_S:-180}
mkdir -p "$OUT"

for bin in "$WSBENCH_DIR/wsbench" "$WSBENCH_DIR/floor-server" "$WSPLUS"; do
  [ -x "$bin" ] || { echo "missing $bin" >&2; exit 1; }
done

export BENCH_SECRET=${BENCH_SECRET:-wsplus-bench-secret-0123456789abcdef}
cat >"$OUT/wsplus.toml" <<EOF
[server]
bind = "127.0.0.1:$PORT"
[admin]
bind = "127.0.0.1:$ADMIN_PORT"
token_env = "BENCH_ADMIN_TOKEN"
[[listeners]]
path = "/ws/events"
[listeners.auth]
mode = "hs256"
secret_env = "BENCH_SECRET"
[[listeners]]
path = "/ws/echo"
scope = "session"
[listeners.auth]
mode = "hs256"
secret_env = "BENCH_SECRET"
[[listeners]]
path = "/ws/global"
scope = "global"
[listeners.auth]
mode = "hs256"
secret_env = "BENCH_SECRET"
EOF
if [ "${LIMITS:-}" != default ]; then
  printf '[limits]\noutbound_queue_messages = 8192\noutbound_queue_bytes = 16777216\n' >>"$OUT/wsplus.toml"
fi
export BENCH_ADMIN_TOKEN=bench-admin-token-0123456789
"$WSPLUS" token --secret-env BENCH_SECRET --tenant bench --ttl 86400 >"$OUT/tokens.txt"

SERVER_PID=""
start_server() { # $1 = floor | wsplus
  if [ "$1" = floor ]; then
    "$WSBENCH_DIR/floor-server" --bind "127.0.0.1:$PORT" --queue 8192 2>"$OUT/floor.log" &
  else
    "$WSPLUS" serve --config "$OUT/wsplus.toml" 2>"$OUT/wsplus.log" &
  fi
  SERVER_PID=$!
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "server $1 did not start" >&2
  exit 1
}
stop_server() {
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}
trap 'if [ -n "$SERVER_PID" ]; then kill -TERM "$SERVER_PID" 2>/dev/null || true; fi' EXIT

# scenario -> wsbench arguments (URL path first) and the figure to report
args_for() {
  case "$1" in
    fanout100)  echo "/ws/events fanout --subs 100 --msgs 2000 --size 128 --warmup-msgs 100" ;;
    fanout1000) echo "/ws/events fanout --subs 1000 --msgs 200 --size 128 --warmup-msgs 20" ;;
    fanout20k)  echo "/ws/events fanout --subs 100 --msgs 20000 --size 128 --warmup-msgs 100" ;;
    steady)     echo "/ws/events fanout --subs 100 --msgs 5000 --size 128 --rate 500 --warmup-msgs 100" ;;
    echo)       echo "/ws/echo echo --conns 50 --rounds 500 --size 128" ;;
    connect)    echo "/ws/events connect --conns 2000 --concurrency 50" ;;
    idle)       echo "/ws/events idle --conns 5000 --hold 5 --concurrency 100" ;;
    global)     echo "/ws/global fanout --subs 100 --msgs 2000 --size 128 --warmup-msgs 100" ;;
    *) echo "unknown scenario $1" >&2; exit 1 ;;
  esac
}
figure() { # jq expression on the report
  case "$1" in
    fanout*|global) echo '"\(.result.deliveries_per_s|floor) lost=\(.result.lost)"' ;;
    steady) echo '"p50=\(.result.latency.p50_us)us p99=\(.result.latency.p99_us)us lost=\(.result.lost)"' ;;
    echo)   echo '"\(.result.round_trips_per_s|floor) lost=\(.result.lost)"' ;;
    connect) echo '"\(.result.connect.handshakes_per_s|floor) failures=\(.result.connect.failures)"' ;;
    idle)   echo '"\(.result.bytes_per_conn) B/conn (\(.result.connect.connected) open)"' ;;
  esac
}

echo "# $(date -u +%FT%TZ) $(uname -r) $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# wsplus $("$WSPLUS" --version 2>/dev/null || echo '?') at $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), limits: ${LIMITS:-bench (8192 messages)}"
for sc in $SCENARIOS; do
  read -r path rest <<<"$(args_for "$sc")"
  for run in $(seq 1 "$RUNS"); do
    for server in floor wsplus; do
      start_server "$server"
      tokens=()
      [ "$server" = wsplus ] && tokens=(--token-file "$OUT/tokens.txt")
      report="$OUT/$sc-$server-$run.json"
      # shellcheck disable=SC2086
      if "$WSBENCH_DIR/wsbench" $rest --url "ws://127.0.0.1:$PORT$path" "${tokens[@]}" \
        --server-pid "$SERVER_PID" --max-seconds "$MAX_S" >"$report" 2>"$OUT/$sc-$server-$run.err"; then
        printf '%-10s %-6s run %s: %s  (load %s)\n' "$sc" "$server" "$run" \
          "$(jq -r "$(figure "$sc")" "$report")" "$(cut -d' ' -f1 /proc/loadavg)"
      else
        printf '%-10s %-6s run %s: FAILED (see %s)\n' "$sc" "$server" "$run" "$OUT/$sc-$server-$run.err"
      fi
      stop_server
    done
  done
done
