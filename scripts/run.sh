#!/usr/bin/env bash
# One command to try p2p-exchange: sets up (packages, build), starts an embedded PostgreSQL under
# .data/ (loopback only, reused on the next run), starts the service on config/p2p-exchange.json and
# prints where the API docs are. Ctrl-C stops both.
#   P2P_PG_PORT    port of the embedded PostgreSQL (default 54329; config/p2p-exchange.json uses it)
#   P2P_HTTP_PORT  port of the service (default: the config's 8080)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=scripts/pg.sh
source scripts/pg.sh

scripts/setup.sh

pg_port=${P2P_PG_PORT:-54329}
data="$root/.data/postgres"
mkdir -p .data
echo "==> starting PostgreSQL on 127.0.0.1:$pg_port ($data)"
pg_start "$data" "$pg_port"
service_pid=""
stop_all() {
  trap - INT TERM EXIT
  if [ -n "$service_pid" ] && kill -0 "$service_pid" 2>/dev/null; then
    kill -TERM "$service_pid" 2>/dev/null || true
    wait "$service_pid" 2>/dev/null || true
  fi
  echo "==> stopping PostgreSQL"
  pg_stop "$data"
}
trap stop_all INT TERM EXIT

psql_admin() { psql -X -q -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres "$@"; }
psql_admin -tAc "SELECT 1 FROM pg_roles WHERE rolname = 'p2p'" | grep -q 1 || psql_admin -c "CREATE ROLE p2p LOGIN"
psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = 'p2p'" | grep -q 1 || psql_admin -c "CREATE DATABASE p2p OWNER p2p"

# A local API key, made once and kept out of git (.data/ is ignored).
if [ ! -s .data/api-key ]; then
  (umask 077 && openssl rand -hex 32 > .data/api-key)
fi
export P2P_API_KEYS=${P2P_API_KEYS:-$(cat .data/api-key)}
# The key that encrypts members' tokens at rest, made once (losing it only loses running jobs' tokens).
if [ ! -s .data/token-encryption-key ]; then
  (umask 077 && openssl rand -base64 32 > .data/token-encryption-key)
fi
export P2P_TOKEN_ENCRYPTION_KEY=${P2P_TOKEN_ENCRYPTION_KEY:-$(cat .data/token-encryption-key)}
export P2P_DATABASE_URL=${P2P_DATABASE_URL:-postgresql://p2p@127.0.0.1:$pg_port/p2p}
http_port=${P2P_HTTP_PORT:-8080}
export P2P_HTTP_PORT=$http_port

build/p2p-exchange --config config/p2p-exchange.json &
service_pid=$!
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$http_port/readyz" >/dev/null 2>&1 && break
  kill -0 "$service_pid" 2>/dev/null || { echo "error: the service exited; see the log above" >&2; exit 1; }
  sleep 0.2
done
cat <<INFO

  p2p-exchange is running.
    API docs (Swagger UI):  http://127.0.0.1:$http_port/
    OpenAPI document:       http://127.0.0.1:$http_port/api/openapi.json
    API key (.data/api-key): send it as "Authorization: Bearer <key>"
    Try:  curl -H "Authorization: Bearer \$(cat .data/api-key)" http://127.0.0.1:$http_port/api/oidc_servers
  Press Ctrl-C to stop the service and PostgreSQL.

INFO
wait "$service_pid" || true
