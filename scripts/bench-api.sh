#!/usr/bin/env bash
# Benchmark (not a test): wrk with 64 connections on GET /api/oidc_servers/{id} against the service
# (auth on, access log on, PostgreSQL behind it), and in the same run against bench-hello-server, a
# bare Beast server built from this tree, as the ceiling. Prints throughput, the ratio and p99 latency.
#   P2P_BENCH_SECONDS  duration of each wrk run (default 15)
#   P2P_BENCH_THREADS  I/O threads of both servers (default 2)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=scripts/pg.sh
source scripts/pg.sh

[ -n "${P2P_BENCH_SKIP_SETUP:-}" ] || scripts/setup.sh >/dev/null
command -v wrk >/dev/null || { apt-get install -y -q wrk >/dev/null 2>&1 || sudo apt-get install -y -q wrk >/dev/null; }
seconds=${P2P_BENCH_SECONDS:-15}
threads=${P2P_BENCH_THREADS:-2}

work=$(mktemp -d /tmp/p2p-bench.XXXXXX)
chmod 755 "$work"
pg_port=$(pg_free_port)
service_pid="" hello_pid=""
cleanup() {
  [ -z "$service_pid" ] || kill "$service_pid" 2>/dev/null || true
  [ -z "$hello_pid" ] || kill "$hello_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  pg_stop "$work/data"
  rm -rf "$work"
}
trap cleanup EXIT
pg_start "$work/data" "$pg_port"
psql -X -q -h 127.0.0.1 -p "$pg_port" -U postgres -c "CREATE DATABASE p2p"

key=$(openssl rand -hex 32)
http_port=$(pg_free_port)
P2P_DATABASE_URL="postgresql://postgres@127.0.0.1:$pg_port/p2p" P2P_API_KEYS="$key" P2P_HTTP_PORT="$http_port" \
  P2P_HTTP_THREADS="$threads" build/p2p-exchange >"$work/service.log" 2>&1 &
service_pid=$!
until curl -fsS "http://127.0.0.1:$http_port/readyz" >/dev/null 2>&1; do sleep 0.2; done
psql -X -q -h 127.0.0.1 -p "$pg_port" -U postgres -d p2p -c \
  "INSERT INTO oidc_servers (name, issuer, client_id, scopes, auth_well_known, token_endpoint, fhir_endpoint, organization_id)
   VALUES ('P2P Source Payer A', 'https://sourcepayerA.com/issuer', 'p2pexchangeclientId', 'openid profile offline_access',
   'https://sourcepayerA.com/.well-known/openid-configuration', 'https://sourcepayerA.com/token-endpoint',
   'https://sourcepayerA.com/fhir-endpoint', 'ABCD')"

# "Requests/sec" and the 99th percentile (in ms) of a wrk --latency report.
rps() { awk '/^Requests\/sec/ {print $2}' "$1"; }
p99_ms() {
  awk '$1 == "99%" { v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
        if (u == "us") v /= 1000; else if (u == "s") v *= 1000; else if (u == "m") v *= 60000; print v }' "$1"
}

url="http://127.0.0.1:$http_port/api/oidc_servers/1"
curl -fsS -H "Authorization: Bearer $key" "$url" >/dev/null
wrk -t2 -c64 -d3s -H "Authorization: Bearer $key" "$url" >/dev/null  # warm-up
echo "==> service: GET /api/oidc_servers/1, 64 connections, ${seconds}s"
wrk -t2 -c64 -d"${seconds}s" --latency -H "Authorization: Bearer $key" "$url" | tee "$work/service.txt"
kill -TERM "$service_pid"; wait "$service_pid" || true; service_pid=""

hello_port=$(pg_free_port)
build/bench-hello-server "$hello_port" "$threads" >/dev/null &
hello_pid=$!
until curl -fsS "http://127.0.0.1:$hello_port/" >/dev/null 2>&1; do sleep 0.1; done
wrk -t2 -c64 -d3s "http://127.0.0.1:$hello_port/" >/dev/null  # warm-up
echo "==> ceiling: bare Beast hello server, 64 connections, ${seconds}s"
wrk -t2 -c64 -d"${seconds}s" --latency "http://127.0.0.1:$hello_port/" | tee "$work/hello.txt"

service_rps=$(rps "$work/service.txt"); hello_rps=$(rps "$work/hello.txt")
awk -v s="$service_rps" -v h="$hello_rps" -v sp="$(p99_ms "$work/service.txt")" -v hp="$(p99_ms "$work/hello.txt")" 'BEGIN {
  printf "\n%-28s %12s %10s\n", "", "requests/s", "p99 (ms)"
  printf "%-28s %12.0f %10.2f\n", "p2p-exchange (PostgreSQL)", s, sp
  printf "%-28s %12.0f %10.2f\n", "bare Beast hello (ceiling)", h, hp
  printf "ratio service/ceiling: %.2f   (target >= 0.60, p99 < 10 ms)\n", s / h
}'
