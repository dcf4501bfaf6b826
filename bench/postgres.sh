#!/usr/bin/env bash
# This server on SQLite, on PostgreSQL, and as two nodes on one PostgreSQL database behind
# nginx, side by side in one run, alternating the competitors as the shared compare.sh
# (../shared/perf/bench) does, with bench/run.sh --url measuring each (its scenarios,
# refresh and write-mix included).
#
#   bench/postgres.sh [--rounds N] [--duration S] [--warmup S] [--products N] [--no-fastapi]
#                     [--variants] [--competitors LIST] [--scenarios LIST] [--delay MS]
#                     [--baseline REV] [--new REV]
#   bench/postgres.sh serve MODE PORT     (what each start runs; MODE below)
#
# Competitors, alternating A B C D A B C D ... (2 rounds, 10 s measured after 3 s of
# warm-up, 1,000 products seeded through the API on every start, by default):
#   fastapi   the FastAPI reference (ratio column; skipped with --no-fastapi)
#   sqlite    (a) one run.py on a fresh SQLite file: the baseline
#   pg1       (b) one run.py on a fresh PostgreSQL database
#   pg2       (c) two run.py (one process each) on one fresh PostgreSQL database, behind an
#             nginx round-robin upstream (1 worker, keep-alive to the nodes) on PORT
# and with --variants, on fewer scenarios:
#   pg1_nginx one run.py behind the same nginx: what the proxy alone costs, for (c)/(b)
#   pg2_split (c) with PASSWORD_HASH_THREADS=1 on each node: the host's two argon2 threads
#             split between its nodes, as an operator would on one machine (name it in
#             --competitors)
#   pg1_async (b) with `synchronous_commit = off` for the database: what the WAL fsync of
#             each commit costs (SQLite's default synchronous=NORMAL does not fsync a commit)
#   MODE_base any mode but fastapi, running the code of --baseline REV (pg1_base, pg2_base):
#             the old code against the new in the same run
#
#   --competitors LIST  these modes, in this order, instead of fastapi,sqlite,pg1,pg2
#                       (e.g. pg1,pg1_base or pg1,pg2,pg2_base); MODE:S1+S2 runs only
#                       the scenarios S1 and S2 for that one
#   --scenarios LIST    bench/run.sh's scenarios (default: products-get, users-me,
#                       products-post, login, products-get-16c, mixed, as compare.sh)
#   --delay MS          every node reaches PostgreSQL through lib/delay_proxy.py, which
#                       delays each chunk MS ms each way: a database a round trip away
#   --baseline REV      the code the MODE_base competitors run: `git archive REV` of this
#                       repository in a temporary folder, run with this checkout's .venv
#   --new REV           the same for the other competitors (default: this checkout)
#                       (either may also be a folder holding a tree, run as it is)
#
# BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/bench_pg) names the server
# and the database. Its name must start with "bench": every start DROPs and re-creates it
# (through the server's "postgres" database), and the run drops it at the end. Every start
# gets a new random SECRET_KEY, shared by the nodes; LOG_STDERR=0; the migrations run at the
# nodes' start (both at once: they take turns on an advisory lock). DATABASE_POOL_SIZE and any
# other setting come from your environment. Needs wrk, psql, nginx (for pg2), python3.
#
# Everything lands in runs/<stamp>/ under ~/.cache/perf-reference (PERF_RUNS overrides):
# results.tsv, results-pgwatch.tsv, <label>-r<round>/ (logs, samples). Each start runs
# lib/cpuwatch.py beside the server, bench/run.sh samples the database's lock waits with
# lib/pgwatch.py during each measured run, and lib/pgreport.py prints the req/s, p99,
# paired ratios, the lock waits and where the CPU went (nodes, PostgreSQL, nginx, the delay
# proxy, wrk, machine) per scenario. run.sh's own server CPU column is 0 for pg2: there its
# server is this script's shell, which does nothing but wait.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
SHARED="${BENCH_SHARED:-$(cd "$ROOT/../shared/perf" 2> /dev/null && pwd || echo /work/shared/perf)}"
HOST_PY="${BENCH_HOST_PYTHON:-python3}"
SERVER_PY="$ROOT/.venv/bin/python"
DELAY_MS="${BENCH_DELAY_MS:-}"  # set by --delay, read by `serve`
URL="${BENCH_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/bench_pg}"
URL_BASE="${URL%%\?*}"
DB="${URL_BASE##*/}"
ADMIN_URL="${URL_BASE%/*}/postgres"

[[ $DB =~ ^bench[a-z0-9_]*$ ]] || {
  echo "postgres.sh: the database in BENCH_DATABASE_URL ($DB) must be named bench…: it is dropped" >&2
  exit 2
}

fresh_database() {  # [SETTING]: drop and re-create $DB, optionally with ALTER DATABASE ... SET
  psql -q -X -v ON_ERROR_STOP=1 "$ADMIN_URL" -c "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" \
    -c "CREATE DATABASE \"$DB\"" > /dev/null
  [[ -z ${1:-} ]] || psql -q -X -v ON_ERROR_STOP=1 "$ADMIN_URL" -c "ALTER DATABASE \"$DB\" SET $1" > /dev/null
}

secret() { "$HOST_PY" -c 'import secrets; print(secrets.token_hex(32))'; }

watch() {  # ARGS...: the sampler, detached (not a child: it must not count in peak RSS)
  ( setsid "$HOST_PY" "$HERE/lib/cpuwatch.py" --out "$PWD" "$@" > cpuwatch.log 2>&1 < /dev/null & )
}

node_cmd() {  # PORT [VAR=VALUE...]: the environment and command of one node, in NODE
  local port="$1"; shift
  NODE=(env -u DATABASE_URL -u DATABASE_PATH LOG_STDERR=0 LOG_FILE="$PWD/app-$port.log"
    SECRET_KEY="$KEY" "$@" "$SERVER_PY" "$CODE/run.py" --host 127.0.0.1 --port "$port")
}

node_url() {  # the DATABASE_URL of the nodes: $URL, or (--delay) a delay proxy in front of it
  NODE_URL="$URL" PROXY=()
  [[ -n $DELAY_MS ]] || return 0
  local hostport="${URL_BASE#*@}" p
  hostport="${hostport%%/*}"
  p="$("$HOST_PY" "$HERE/lib/tool.py" free-port)"
  # Detached, not a child: its CPU and memory are not the nodes'. It ends with this shell.
  ( setsid "$HOST_PY" "$HERE/lib/delay_proxy.py" --listen "$p" --target "$hostport" \
      --delay-ms "$DELAY_MS" --pid-file proxy.pid --while-pid $$ > proxy.log 2>&1 < /dev/null & )
  for _ in {1..100}; do [[ -s proxy.pid ]] && (: < "/dev/tcp/127.0.0.1/$p") 2> /dev/null && break; sleep 0.1; done
  NODE_URL="${URL/"@$hostport/"/"@127.0.0.1:$p/"}"
  PROXY=(--pid "proxy=$(< proxy.pid)")
}

serve() {  # MODE PORT; runs in a fresh folder for this competitor and round
  local mode="$1" port="$2"
  KEY="$(secret)" CODE="$ROOT"
  if [[ $mode == *_base ]]; then CODE="$BENCH_CODE_BASE" mode="${mode%_base}"
  elif [[ -n ${BENCH_CODE_NEW:-} ]]; then CODE="$BENCH_CODE_NEW"; fi
  case "$mode" in
    fastapi)
      watch --pid "server=$$" --port "$port"
      exec "$SHARED/reference/fastapi_seed/run.sh" "$port" ;;
    sqlite)
      watch --pid "node=$$" --port "$port"
      node_cmd "$port"
      exec "${NODE[@]}" ;;  # the default DATABASE_PATH: products.db in this fresh folder
    pg1 | pg1_async)
      if [[ $mode == pg1_async ]]; then fresh_database "synchronous_commit = off"; else fresh_database; fi
      node_url
      watch --pid "node=$$" "${PROXY[@]}" --db "$DB" --port "$port"
      node_cmd "$port" DATABASE_URL="$NODE_URL"
      exec "${NODE[@]}" ;;
    pg2 | pg2_split | pg1_nginx)
      fresh_database
      node_url
      serve_behind_nginx "$mode" "$port" ;;
    *) echo "postgres.sh: unknown mode $mode" >&2; exit 2 ;;
  esac
}

serve_behind_nginx() {  # MODE PORT: the nodes on free ports, then nginx on PORT; until SIGTERM
  local mode="$1" port="$2" n=2 p pid
  local -a env=(DATABASE_URL="$NODE_URL")
  [[ $mode == pg1_nginx ]] && n=1
  [[ $mode == pg2_split ]] && env+=(PASSWORD_HASH_THREADS=1)
  PORTS=() PIDS=()  # global: the traps read them
  for ((i = 0; i < n; i++)); do
    p="$("$HOST_PY" "$HERE/lib/tool.py" free-port)"
    node_cmd "$p" "${env[@]}"
    "${NODE[@]}" > "node-$p.log" 2>&1 &
    PORTS+=("$p") PIDS+=($!)
  done
  stop_all() {
    trap - TERM INT EXIT
    kill -TERM "${PIDS[@]}" 2> /dev/null || true  # nginx: fast shutdown on TERM
    wait 2> /dev/null || true
    exit 0
  }
  trap stop_all TERM INT EXIT
  for i in "${!PORTS[@]}"; do
    "$HOST_PY" "$HERE/lib/tool.py" wait-http "http://127.0.0.1:${PORTS[$i]}/health/ready" "${PIDS[$i]}" 60
  done
  mkdir -p nginx
  {
    [[ $EUID != 0 ]] || echo "user root;"  # workers as nobody could not reach temp dirs under /root
    echo "worker_processes 1; daemon off; pid $PWD/nginx/nginx.pid; error_log $PWD/nginx/error.log warn;"
    echo "events { worker_connections 4096; }"
    echo "http {"
    echo "  access_log off;"
    for t in client_body proxy fastcgi uwsgi scgi; do echo "  ${t}_temp_path $PWD/nginx/$t;"; done
    echo "  upstream nodes {"
    for p in "${PORTS[@]}"; do echo "    server 127.0.0.1:$p;"; done
    echo "    keepalive 128;"
    echo "  }"
    echo "  server {"
    echo "    listen 127.0.0.1:$port;"
    echo "    location / {"
    echo "      proxy_pass http://nodes;"
    echo "      proxy_http_version 1.1;"
    echo "      proxy_set_header Connection \"\";"
    echo "      proxy_set_header Host \$http_host;"
    echo "    }"
    echo "  }"
    echo "}"
  } > nginx/nginx.conf
  nginx -p "$PWD/nginx" -c "$PWD/nginx/nginx.conf" > nginx/stdout.log 2>&1 &
  pid=$!
  PIDS+=("$pid")
  local -a roles=()
  for ((i = 0; i < n; i++)); do roles+=(--pid "node=${PIDS[$i]}"); done
  watch "${roles[@]}" --pid "nginx=$pid" "${PROXY[@]}" --db "$DB" --port "$port"
  wait "$pid" || true  # nginx ends: stop the nodes too
  stop_all
}

if [[ ${1:-} == serve ]]; then
  serve "$2" "$3"
  exit
fi

ROUNDS=2 NO_FASTAPI=0 VARIANTS=0 COMPETING="" SCENARIOS="" BASELINE="" NEW=""
SCENARIOS_DEFAULT="products-get,users-me,products-post,login,products-get-16c,mixed"
OPTS=() ARGS="$*"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --duration | --warmup | --products) OPTS+=("$1" "$2"); shift 2 ;;
    --no-fastapi) NO_FASTAPI=1; shift ;;
    --variants) VARIANTS=1; shift ;;
    --competitors) COMPETING="$2"; shift 2 ;;
    --scenarios) SCENARIOS="$2"; shift 2 ;;
    --delay) DELAY_MS="$2"; shift 2 ;;
    --baseline) BASELINE="$2"; shift 2 ;;
    --new) NEW="$2"; shift 2 ;;
    -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "postgres.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
command -v psql > /dev/null || { echo "postgres.sh: psql not found" >&2; exit 2; }
command -v nginx > /dev/null || { echo "postgres.sh: nginx not found (apt-get install -y nginx)" >&2; exit 2; }
psql -q -X "$ADMIN_URL" -c 'SELECT 1' > /dev/null
CODES="$(mktemp -d "${TMPDIR:-/tmp}/bench-code.XXXXXX")"
trap 'psql -q -X "$ADMIN_URL" -c "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" > /dev/null || true; rm -rf "$CODES"' EXIT

checkout() {  # REV DIR: the tree of REV (a commit, a branch) in DIR, without touching any worktree
  if [[ -d $1 ]]; then  # a folder (another worktree, uncommitted changes and all): as it is
    ln -s "$(cd "$1" && pwd)" "$2"
    echo "# $(basename "$2"): the folder $1 at $(git -C "$1" rev-parse --short HEAD 2> /dev/null || echo ?)"
    return
  fi
  mkdir -p "$2"
  git -C "$ROOT" archive "$(git -C "$ROOT" rev-parse --verify "$1^{commit}")" | tar -x -C "$2"
  echo "# $(basename "$2"): $1 = $(git -C "$ROOT" log -1 --format='%h %s' "$1" | cut -c1-100)"
}
[[ -z $BASELINE ]] || { checkout "$BASELINE" "$CODES/base"; export BENCH_CODE_BASE="$CODES/base"; }
[[ -z $NEW ]] || { checkout "$NEW" "$CODES/new"; export BENCH_CODE_NEW="$CODES/new"; }
export BENCH_DELAY_MS="$DELAY_MS"

if [[ -z $COMPETING ]]; then
  [[ $NO_FASTAPI == 1 ]] && COMPETING="sqlite,pg1,pg2" || COMPETING="fastapi,sqlite,pg1,pg2"
fi
COMPETITORS=()  # label|extra run.sh options
for mode in ${COMPETING//,/ }; do  # MODE or MODE:SCENARIO+SCENARIO...
  [[ ${mode%%:*} != *_base || -n $BASELINE ]] || { echo "postgres.sh: $mode needs --baseline REV" >&2; exit 2; }
  if [[ $mode == *:* ]]; then COMPETITORS+=("${mode%%:*}|--scenarios ${mode#*:}"); else COMPETITORS+=("$mode|"); fi
done
if [[ $VARIANTS == 1 ]]; then
  COMPETITORS+=("pg1_nginx|--scenarios products-get,users-me,products-get-16c"
    "pg1_async|--scenarios products-post,login")
fi

start_one() {  # MODE PORT DIR: `serve` in DIR, in the background, as SERVER
  ( cd "$3" && exec "$HERE/postgres.sh" serve "$1" "$2" ) > "$3/server.log" 2>&1 &
  SERVER=$!
}

stop_one() {  # SIGTERM, SIGKILL after 15 s; only the process this script started
  kill -TERM "$SERVER" 2> /dev/null || true
  for _ in {1..150}; do kill -0 "$SERVER" 2> /dev/null || break; sleep 0.1; done
  kill -KILL "$SERVER" 2> /dev/null || true
  wait "$SERVER" 2> /dev/null || true
}

run_one() {  # SPEC ROUND
  local label extra port dir ready=/health rss
  IFS='|' read -r label extra <<< "$1"
  port="$("$HOST_PY" "$HERE/lib/tool.py" free-port)" dir="$OUT/$label-r$2"
  mkdir -p "$dir"
  echo "## $label, round $2 (port $port; load $(cut -d' ' -f1-3 /proc/loadavg))"
  start_one "$label" "$port" "$dir"
  [[ $label != fastapi ]] || ready=/docs
  if ! "$HOST_PY" "$HERE/lib/tool.py" wait-http "http://127.0.0.1:$port$ready" "$SERVER" 120; then
    tail -20 "$dir/server.log" >&2
    stop_one
    return 0
  fi
  local -a watch_db=()
  [[ $label == fastapi || $label == sqlite* ]] || watch_db=(--pg-watch "$URL")
  # shellcheck disable=SC2086  # extra holds run.sh options
  "$HERE/run.sh" --url "http://127.0.0.1:$port" --pid "$SERVER" --tsv "$OUT/results.tsv" \
    --label "$label" --round "$2" --scenarios "${SCENARIOS:-$SCENARIOS_DEFAULT}" "${OPTS[@]}" \
    "${watch_db[@]}" ${extra//+/,} || true  # errors are in the table; the others still run
  rss="$("$HOST_PY" "$HERE/lib/tool.py" peak-rss "$SERVER")"
  printf '%s\t%s\t%s\n' "$label" "$2" "$rss" >> "$OUT/servers.tsv"
  stop_one
}

export PERF_RUNS="${PERF_RUNS:-${XDG_CACHE_HOME:-$HOME/.cache}/perf-reference/runs}"
OUT="$PERF_RUNS/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
{
  echo "# bench/postgres.sh $ARGS"
  echo "# $(basename "$OUT"): ${#COMPETITORS[@]} competitors x $ROUNDS rounds, alternating;" \
    "$(nproc) CPUs; bench/ at $(git -C "$ROOT" rev-parse --short HEAD 2> /dev/null || echo ?)${DELAY_MS:+; database ${DELAY_MS} ms away each way}"
  echo "# load before: $(uptime)"
} | tee "$OUT/meta.txt"
for round in $(seq "$ROUNDS"); do
  for spec in "${COMPETITORS[@]}"; do run_one "$spec" "$round"; done
done 2>&1 | tee "$OUT/bench.log"
echo "# load after: $(uptime)" | tee -a "$OUT/meta.txt"
"$HOST_PY" "$HERE/lib/pgreport.py" "$OUT" | tee "$OUT/postgres.md"
