#!/usr/bin/env bash
# This server on SQLite, on PostgreSQL, and as two nodes on one PostgreSQL database behind
# nginx, side by side in one run of the shared compare.sh (../shared/perf/bench).
#
#   bench/postgres.sh [--rounds N] [--duration S] [--warmup S] [--products N] [--no-fastapi] [--variants]
#   bench/postgres.sh serve MODE PORT     (what compare.sh starts; MODE below)
#
# Competitors, alternating A B C D A B C D ... (compare.sh's defaults: 2 rounds, 10 s
# measured after 3 s of warm-up, 1,000 products seeded through the API on every start):
#   fastapi   the FastAPI reference (ratio column; skipped with --no-fastapi)
#   sqlite    (a) one run.py on a fresh SQLite file: the baseline
#   pg1       (b) one run.py on a fresh PostgreSQL database
#   pg2       (c) two run.py (one process each) on one fresh PostgreSQL database, behind an
#             nginx round-robin upstream (1 worker, keep-alive to the nodes) on PORT
# and with --variants, on fewer scenarios:
#   pg1_nginx one run.py behind the same nginx: what the proxy alone costs, for (c)/(b)
#   pg1_async (b) with `synchronous_commit = off` for the database: what the WAL fsync of
#             each commit costs (SQLite's default synchronous=NORMAL does not fsync a commit)
#
# BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/bench_pg) names the server
# and the database. Its name must start with "bench": every start DROPs and re-creates it
# (through the server's "postgres" database), and the run drops it at the end. Every start
# gets a new random SECRET_KEY, shared by the nodes; LOG_STDERR=0; the migrations run at the
# nodes' start (both at once: they take turns on an advisory lock). DATABASE_POOL_SIZE and any
# other setting come from your environment. Needs wrk, psql, nginx (for pg2), python3.
#
# Besides compare.sh's table (runs/<stamp>/ under ~/.cache/perf-reference, see its README),
# each start runs lib/cpuwatch.py beside the server, and lib/pgreport.py prints the req/s,
# p99, paired ratios and where the CPU went (nodes, PostgreSQL, nginx, wrk, machine) per
# scenario. compare.sh's own server CPU column is 0 for pg2: there its server is this
# script's shell, which does nothing but wait.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
SHARED="${BENCH_SHARED:-$(cd "$ROOT/../shared/perf" 2> /dev/null && pwd || echo /work/shared/perf)}"
HOST_PY="${BENCH_HOST_PYTHON:-python3}"
SERVER_PY="$ROOT/.venv/bin/python"
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
    SECRET_KEY="$KEY" "$@" "$SERVER_PY" "$ROOT/run.py" --host 127.0.0.1 --port "$port")
}

serve() {  # MODE PORT; runs in compare.sh's fresh folder for this competitor and round
  local mode="$1" port="$2"
  KEY="$(secret)"
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
      watch --pid "node=$$" --db "$DB" --port "$port"
      node_cmd "$port" DATABASE_URL="$URL"
      exec "${NODE[@]}" ;;
    pg2 | pg1_nginx)
      fresh_database
      serve_behind_nginx "$mode" "$port" ;;
    *) echo "postgres.sh: unknown mode $mode" >&2; exit 2 ;;
  esac
}

serve_behind_nginx() {  # MODE PORT: the nodes on free ports, then nginx on PORT; until SIGTERM
  local mode="$1" port="$2" n=2 p pid
  [[ $mode == pg1_nginx ]] && n=1
  PORTS=() PIDS=()  # global: the traps read them
  for ((i = 0; i < n; i++)); do
    p="$("$HOST_PY" "$HERE/lib/tool.py" free-port)"
    node_cmd "$p" DATABASE_URL="$URL"
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
  watch "${roles[@]}" --pid "nginx=$pid" --db "$DB" --port "$port"
  wait "$pid" || true  # nginx ends: stop the nodes too
  stop_all
}

if [[ ${1:-} == serve ]]; then
  serve "$2" "$3"
  exit
fi

ROUNDS=2 NO_FASTAPI=0 VARIANTS=0
OPTS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --duration | --warmup | --products) OPTS+=("$1" "$2"); shift 2 ;;
    --no-fastapi) NO_FASTAPI=1; shift ;;
    --variants) VARIANTS=1; shift ;;
    -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "postgres.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
command -v psql > /dev/null || { echo "postgres.sh: psql not found" >&2; exit 2; }
command -v nginx > /dev/null || { echo "postgres.sh: nginx not found (apt-get install -y nginx)" >&2; exit 2; }
psql -q -X "$ADMIN_URL" -c 'SELECT 1' > /dev/null
trap 'psql -q -X "$ADMIN_URL" -c "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" > /dev/null || true' EXIT

ME="$HERE/postgres.sh serve"
COMPETITORS=()
[[ $NO_FASTAPI == 1 ]] || COMPETITORS+=("fastapi|$ME fastapi {PORT}|")
COMPETITORS+=("sqlite|$ME sqlite {PORT}|" "pg1|$ME pg1 {PORT}|" "pg2|$ME pg2 {PORT}|")
if [[ $VARIANTS == 1 ]]; then
  COMPETITORS+=("pg1_nginx|$ME pg1_nginx {PORT}|--scenarios products-get,users-me,products-get-16c"
    "pg1_async|$ME pg1_async {PORT}|--scenarios products-post,login")
fi
export PERF_RUNS="${PERF_RUNS:-${XDG_CACHE_HOME:-$HOME/.cache}/perf-reference/runs}"
echo "# load before: $(uptime)"
before="$(ls "$PERF_RUNS" 2> /dev/null || true)"
"$SHARED/bench/compare.sh" --rounds "$ROUNDS" "${OPTS[@]}" "${COMPETITORS[@]}"
echo "# load after: $(uptime)"
run="$(comm -13 <(echo "$before") <(ls "$PERF_RUNS") | tail -1)"
"$HOST_PY" "$HERE/lib/pgreport.py" "$PERF_RUNS/$run" | tee "$PERF_RUNS/$run/postgres.md"
