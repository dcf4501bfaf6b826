#!/usr/bin/env bash
# Benchmark this checkout's server alone, with wrk, on 127.0.0.1.
#
#   bench/run.sh [--smoke] [options]
#
# Starts `run.py` from this checkout on a free port with a fresh temporary database and log
# (LOG_STDERR=0, a random SECRET_KEY; any other setting is taken from your environment, e.g.
# PRODUCT_WRITE_ACCESS=user), seeds it through the API (one signed-up user, --products
# products), runs wrk per scenario, prints req/s and p50/p99 per scenario, the server's peak
# RSS, and saves the results under bench/results/<stamp>[-smoke].{txt,tsv} (git-ignored).
# Exits 1 if any response was not 2xx or any socket error/timeout happened.
# With --url it measures a server that is already running instead (bench/postgres.sh does).
#
#   --smoke             ~1 s per scenario, few connections, 20 products, every response's
#                       status checked (3xx counts as a failure too): for CI, fails on errors only
#   --duration S        measured seconds per scenario (default 10; smoke 1)
#   --warmup S          discarded warm-up seconds before each scenario (default 3; smoke 0)
#   --products N        products created before the runs (default 1000; smoke 20)
#   --scenarios LIST    comma list (default: all, in this order):
#                       products-get, products-list, users-me, products-post, products-put,
#                       login, products-get-16c, mixed, refresh, write-mix
#   --python PATH       interpreter for run.py (default: .venv/bin/python of this checkout)
#   --keep              keep the temporary folder (database, app.log, server.log, wrk output)
#   --profile PY_SPY    also sample the server with py-spy (path to its binary; not a project
#                       dependency) during each measured run and print where the event loop's
#                       time goes; raw samples saved beside the results. Sampling pauses the
#                       server: throughput is lower than without --profile, compare shares only
#   --url BASE          measure the server at BASE (http://127.0.0.1:PORT) instead of starting
#                       one; --pid PID names its process (CPU, peak RSS), if you have it
#   --tsv FILE          append the result rows to FILE (default bench/results/<stamp>.tsv),
#                       with --label L and --round R in their first two columns
#   --pg-watch URL      the server's PostgreSQL database: sample its lock waits and count
#                       its commits, rollbacks and logged errors during each measured run
#                       (lib/pgwatch.py; rows in FILE-pgwatch.tsv beside the results)
#
# Scenarios (2 wrk threads; smoke: 1 thread, 4 connections, 2 for login):
#   products-get       GET /products/{random seeded id}                64 connections
#   products-list      GET /products/?limit=100 (a page of 100)        64
#   users-me           GET /users/me with a bearer token                64
#   products-post      POST /products/ JSON (a durable commit each)     64
#   products-put       PUT /products/{random seeded id} JSON            64
#   login              POST /login/access-token (argon2)                 8
#   products-get-16c   GET /products/{id} alone                         16
#   mixed              login at 8 connections in the background while a second wrk measures
#                      GET /products/{id} at 16: compare with products-get-16c
#   refresh            POST /login/refresh, each connection rotating its own session's refresh
#                      token (seeded: lib/seed.py --sessions)                64
#   write-mix          five wrk at once, 1 thread each, each reported with its own p99:
#                      login 4, refresh 8, POST /products/ 16, PUT 16, GET /products/{id} 16
#                      (smoke: 1, 2, 2, 2, 2)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
LIB="$HERE/lib"
HOST_PY="${BENCH_HOST_PYTHON:-python3}"   # runs the stdlib helpers
SERVER_PY="$ROOT/.venv/bin/python"
ALL="products-get,products-list,users-me,products-post,products-put,login,products-get-16c,mixed"
ALL+=",refresh,write-mix"
SCENARIOS="$ALL" SMOKE=0 KEEP=0 DURATION="" WARMUP="" PRODUCTS="" PY_SPY=""
URL="" SERVER_PID="" TSV="" LABEL="" ROUND="" PG_WATCH=""

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --smoke) SMOKE=1; shift ;;
    --duration) DURATION="$2"; shift 2 ;;
    --warmup) WARMUP="$2"; shift 2 ;;
    --products) PRODUCTS="$2"; shift 2 ;;
    --scenarios) SCENARIOS="$2"; shift 2 ;;
    --python) SERVER_PY="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --profile) PY_SPY="$2"; shift 2 ;;
    --url) URL="${2%/}"; shift 2 ;;
    --pid) SERVER_PID="$2"; shift 2 ;;
    --tsv) TSV="$2"; shift 2 ;;
    --label) LABEL="$2"; shift 2 ;;
    --round) ROUND="$2"; shift 2 ;;
    --pg-watch) PG_WATCH="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [[ $SMOKE == 1 ]]; then
  THREADS=1 CONNS=4 LOGIN_CONNS=2 MIXED_CONNS=4 MIX=(1 2 2 2 2)
  : "${DURATION:=1}" "${WARMUP:=0}" "${PRODUCTS:=20}"
  export BENCH_STRICT=1
else
  THREADS=2 CONNS=64 LOGIN_CONNS=8 MIXED_CONNS=16 MIX=(4 8 16 16 16)
  : "${DURATION:=10}" "${WARMUP:=3}" "${PRODUCTS:=1000}"
  export BENCH_STRICT=0
fi
command -v wrk > /dev/null || { echo "run.sh: wrk not found (apt-get install -y wrk)" >&2; exit 2; }
[[ -n $URL || -x $SERVER_PY ]] || { echo "run.sh: $SERVER_PY not found (make install, or --python)" >&2; exit 2; }
[[ -z $PY_SPY || -n $SERVER_PID ]] || { echo "run.sh: --profile needs the server's --pid" >&2; exit 2; }
[[ -z $PY_SPY || -x $PY_SPY ]] || { echo "run.sh: --profile: $PY_SPY is not executable" >&2; exit 2; }
for s in ${SCENARIOS//,/ }; do
  [[ ",$ALL," == *",$s,"* ]] || { echo "run.sh: unknown scenario $s" >&2; exit 2; }
done

STAMP="$(date +%Y%m%d-%H%M%S)$([[ $SMOKE == 1 ]] && echo -smoke || true)"
RESULTS="$HERE/results"
mkdir -p "$RESULTS"
TSV="${TSV:-$RESULTS/$STAMP.tsv}" TXT="$RESULTS/$STAMP.txt"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/bench.XXXXXX")"

stop_server() {  # SIGTERM, SIGKILL after 15 s; only the process this script started
  [[ -z $URL && -n $SERVER_PID ]] || return 0
  kill -TERM "$SERVER_PID" 2> /dev/null || true
  local i
  for ((i = 0; i < 150; i++)); do kill -0 "$SERVER_PID" 2> /dev/null || break; sleep 0.1; done
  kill -KILL "$SERVER_PID" 2> /dev/null || true
  wait "$SERVER_PID" 2> /dev/null || true
  SERVER_PID=""
}
cleanup() {
  stop_server
  if [[ $KEEP == 1 ]]; then echo "kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# ---- start the server ----------------------------------------------------------------
if [[ -n $URL ]]; then
  BASE="$URL"
else
  PORT="$("$HOST_PY" "$LIB/tool.py" free-port)"
  BASE="http://127.0.0.1:$PORT"
  (
    cd "$ROOT"
    DATABASE_PATH="$WORK/bench.db" LOG_FILE="$WORK/app.log" LOG_STDERR=0 \
      SECRET_KEY="$("$HOST_PY" -c 'import secrets; print(secrets.token_hex(32))')" \
      exec "$SERVER_PY" run.py --host 127.0.0.1 --port "$PORT"
  ) > "$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  if ! "$HOST_PY" "$LIB/tool.py" wait-http "$BASE/health" "$SERVER_PID" 60; then
    cat "$WORK/server.log" >&2
    exit 1
  fi
fi
# Refresh tokens: a fresh slice for every wrk run of refresh.lua (warm-up included), since a
# token sent twice would end its session. Each is a login (argon2), so the warm-up takes 8.
# Each slice has 1 spare token per 8 connections: wrk drops a request in flight, unseen,
# when the server closes the connection, and its connection then needs another token (a
# login otherwise, whose argon2 latency would end up in the refreshes' p99).
SESSIONS=0 SESSIONS_USED=0
warm_conns() { [[ $WARMUP == 0 ]] && echo 0 || echo $(($1 < 8 ? $1 : 8)); }
with_spares() { echo $(($1 == 0 ? 0 : $1 + ($1 + 7) / 8)); }
for s in ${SCENARIOS//,/ }; do
  case "$s" in
    refresh) SESSIONS=$((SESSIONS + $(with_spares "$CONNS") + $(with_spares "$(warm_conns "$CONNS")"))) ;;
    write-mix) SESSIONS=$((SESSIONS + $(with_spares "${MIX[1]}") + $(with_spares "$(warm_conns "${MIX[1]}")"))) ;;
  esac
done
"$HOST_PY" "$LIB/seed.py" "$BASE" --out-dir "$WORK" --products "$PRODUCTS" --sessions "$SESSIONS" 2>&1
export BENCH_LUA="$LIB/wrk" BENCH_IDS_FILE="$WORK/ids.txt"
BENCH_TOKEN="$(< "$WORK/token.txt")" BENCH_LOGIN_BODY="$(< "$WORK/login_body.txt")"
export BENCH_TOKEN BENCH_LOGIN_BODY
WAIT_LINE=""
if [[ -n $PY_SPY ]]; then  # the line where an idle aiosqlite thread waits for work
  WAIT_LINE="$("$SERVER_PY" -c 'import inspect, aiosqlite.core as c
lines, start = inspect.getsourcelines(c._connection_worker_thread)
print(start + next(i for i, line in enumerate(lines) if "tx.get()" in line))' 2> /dev/null || true)"
fi
: > "$WORK/profiles.txt"

# ---- measuring helpers ---------------------------------------------------------------
ticks() { [[ -z $SERVER_PID ]] || "$HOST_PY" "$LIB/tool.py" cpu-ticks "$SERVER_PID"; }

take_sessions() {  # COUNT FILE: the next COUNT seeded refresh tokens into FILE
  : > "$2"
  [[ $1 == 0 ]] || sed -n "$((SESSIONS_USED + 1)),$((SESSIONS_USED + $1))p" "$WORK/sessions.txt" > "$2"
  SESSIONS_USED=$((SESSIONS_USED + $1))
}

timed_wrk() {  # NAME CONNS SECONDS SCRIPT PATH [THREADS] -> $WORK/NAME.out, $WORK/NAME.time
  local TIMEFORMAT='%U %S %R' t="${6:-$THREADS}"
  { time BENCH_THREADS="$t" BENCH_SESSIONS_FILE="$WORK/$1.sessions" \
      wrk -t"$t" -c"$2" -d"$3s" --timeout 10s -s "$LIB/wrk/$4" "$BASE$5" \
      > "$WORK/$1.out" 2>&1 || true; } 2> "$WORK/$1.time"   # a failed wrk: report says so
}

warm_up() {  # CONNS SCRIPT PATH [THREADS] [NAME]
  [[ $WARMUP == 0 ]] || BENCH_STRICT=0 BENCH_THREADS="${4:-$THREADS}" \
    BENCH_SESSIONS_FILE="$WORK/${5:-x}.warm.sessions" wrk -t"${4:-$THREADS}" -c"$1" \
    -d"${WARMUP}s" --timeout 10s -s "$LIB/wrk/$2" "$BASE$3" > /dev/null 2>&1 || true
}

pg_watch_start() {  # NAME: lib/pgwatch.py in the background for the measured run
  PG_WATCHER=""
  [[ -n $PG_WATCH ]] || return 0
  local db="${PG_WATCH%%\?*}"
  "$HOST_PY" "$LIB/pgwatch.py" --url "$PG_WATCH" --db "${db##*/}" --tsv "${TSV%.tsv}-pgwatch.tsv" \
    --label "$LABEL" --round "$ROUND" --scenario "$1" &
  PG_WATCHER=$!
}

pg_watch_stop() {
  [[ -n $PG_WATCHER ]] || return 0
  kill -TERM "$PG_WATCHER" 2> /dev/null || true
  wait "$PG_WATCHER" || true
}

profile_start() {  # NAME: py-spy in the background for the measured run (with --profile)
  PROFILER=""
  [[ -n $PY_SPY ]] || return 0
  "$PY_SPY" record -p "$SERVER_PID" -d "$((DURATION > 2 ? DURATION - 1 : 1))" -r 250 --threads --idle \
      -f raw -o "$RESULTS/$STAMP.$1.pyspy.txt" > "$WORK/$1.pyspy.log" 2>&1 &
  PROFILER=$!
}

profile_report() {  # NAME
  [[ -n $PROFILER ]] || return 0
  wait "$PROFILER" || { cat "$WORK/$1.pyspy.log" >&2; return 0; }
  echo "--- $1: py-spy samples of the server (${RESULTS#"$ROOT"/}/$STAMP.$1.pyspy.txt)"
  "$HOST_PY" "$LIB/breakdown.py" "$RESULTS/$STAMP.$1.pyspy.txt" "$WAIT_LINE"
  echo
}

report() {  # NAME CONNS TICKS_BEFORE TICKS_AFTER
  "$HOST_PY" "$LIB/tool.py" result --scenario "$1" --conns "$2" --wrk-out "$WORK/$1.out" \
      --time-file "$WORK/$1.time" --ticks-before "$3" --ticks-after "$4" --tsv "$TSV" \
      --label "$LABEL" --round "$ROUND"
}

run_scenario() {  # NAME CONNS SCRIPT PATH
  if [[ $3 == refresh.lua ]]; then
    take_sessions "$(with_spares "$(warm_conns "$2")")" "$WORK/$1.warm.sessions"
    take_sessions "$(with_spares "$2")" "$WORK/$1.sessions"
  fi
  warm_up "$(if [[ $3 == refresh.lua ]]; then warm_conns "$2"; else echo "$2"; fi)" "$3" "$4" "" "$1"
  local before after
  before="$(ticks)"
  profile_start "$1"
  pg_watch_start "$1"
  timed_wrk "$1" "$2" "$DURATION" "$3" "$4"
  pg_watch_stop
  after="$(ticks)"
  report "$1" "$2" "$before" "$after"
  profile_report "$1" >> "$WORK/profiles.txt"
}

# write-mix: every request type at once, one wrk (1 thread) each, so each has its own p99.
MIX_RUNS=("login 0 login.lua /login/access-token" "refresh 1 refresh.lua /login/refresh"
  "products-post 2 products_post.lua /products/" "products-put 3 products_put.lua /products/1"
  "products-get 4 products_get.lua /products/1")

run_write_mix() {
  local spec name i script path pids=() before after
  take_sessions "$(with_spares "$(warm_conns "${MIX[1]}")")" "$WORK/write-mix:refresh.warm.sessions"
  take_sessions "$(with_spares "${MIX[1]}")" "$WORK/write-mix:refresh.sessions"
  for spec in "${MIX_RUNS[@]}"; do
    read -r name i script path <<< "$spec"
    warm_up "${MIX[i]}" "$script" "$path" 1 "write-mix:$name" &
    pids+=($!)
  done
  wait "${pids[@]}"
  pids=()
  before="$(ticks)"
  pg_watch_start write-mix
  for spec in "${MIX_RUNS[@]}"; do
    read -r name i script path <<< "$spec"
    timed_wrk "write-mix:$name" "${MIX[i]}" "$DURATION" "$script" "$path" 1 &
    pids+=($!)
  done
  wait "${pids[@]}"
  pg_watch_stop
  after="$(ticks)"
  for spec in "${MIX_RUNS[@]}"; do
    read -r name i _ <<< "$spec"
    report "write-mix:$name" "${MIX[i]}" "$before" "$after"
    before="" after=""  # the server's CPU once, on the first line: it served them all
  done
}

run_mixed() {
  warm_up "$MIXED_CONNS" products_get.lua /products/1
  timed_wrk "mixed:login(bg)" "$LOGIN_CONNS" $((DURATION + 2)) login.lua /login/access-token &
  local bg=$! before after
  sleep 1
  before="$(ticks)"
  profile_start mixed
  timed_wrk "mixed:products-get-16c" "$MIXED_CONNS" "$DURATION" products_get.lua /products/1
  after="$(ticks)"
  wait "$bg"
  report "mixed:products-get-16c" "$MIXED_CONNS" "$before" "$after"
  report "mixed:login(bg)" "$LOGIN_CONNS" "" ""
  profile_report mixed >> "$WORK/profiles.txt"
}

# ---- run -----------------------------------------------------------------------------
{
  commit="$(git -C "$ROOT" rev-parse --short HEAD 2> /dev/null || echo unknown)"
  git -C "$ROOT" diff --quiet HEAD -- service run.py 2> /dev/null || commit="$commit+uncommitted"
  if [[ -n $URL ]]; then
    echo "# bench/run.sh $STAMP: the server at $URL${LABEL:+ ($LABEL, round $ROUND)}"
  else
    echo "# bench/run.sh $STAMP: $ROOT at $commit; $("$SERVER_PY" --version 2>&1)"
  fi
  echo "# $(nproc) CPUs shared by server and wrk, $(uname -srm), $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2)"
  echo "# wrk -t$THREADS, ${DURATION}s measured after ${WARMUP}s warm-up, $PRODUCTS products;" \
       "load avg before: $(cut -d' ' -f1-3 /proc/loadavg)"
  "$HOST_PY" "$LIB/tool.py" header
} | tee "$TXT"
{
  for scenario in ${SCENARIOS//,/ }; do
    case "$scenario" in
      products-get)     run_scenario products-get "$CONNS" products_get.lua /products/1 ;;
      products-list)    run_scenario products-list "$CONNS" get.lua "/products/?limit=100" ;;
      users-me)         run_scenario users-me "$CONNS" users_me.lua /users/me ;;
      products-post)    run_scenario products-post "$CONNS" products_post.lua /products/ ;;
      products-put)     run_scenario products-put "$CONNS" products_put.lua /products/1 ;;
      login)            run_scenario login "$LOGIN_CONNS" login.lua /login/access-token ;;
      products-get-16c) run_scenario products-get-16c "$MIXED_CONNS" products_get.lua /products/1 ;;
      mixed)            run_mixed ;;
      refresh)          run_scenario refresh "$CONNS" refresh.lua /login/refresh ;;
      write-mix)        run_write_mix ;;
    esac
  done
  if [[ -z $URL ]]; then
    echo "server peak RSS (VmHWM): $("$HOST_PY" "$LIB/tool.py" peak-rss "$SERVER_PID") MiB;" \
         "log lines (all rotated files): $(cat "$WORK"/app*.log | wc -l)"
  fi
  if [[ -s $WORK/profiles.txt ]]; then echo; cat "$WORK/profiles.txt"; fi
} 2>&1 | tee -a "$TXT"
echo "results: ${TXT#"$ROOT"/} and ${TSV#"$ROOT"/}"
"$HOST_PY" "$LIB/tool.py" check "$TSV"
