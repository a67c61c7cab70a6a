#!/usr/bin/env bash
# Benchmark (not a test): wrk with 64 connections on GET /api/oidc_servers/{id} against the service
# (auth on, access log on, PostgreSQL behind it), and in the same run against bench-hello-server, a
# bare Beast server built from this tree, as the ceiling. Prints throughput, the ratio and p99 latency.
#   P2P_BENCH_SECONDS  duration of each wrk run (default 10)
#   P2P_BENCH_ROUNDS   alternating rounds of service then ceiling (default 3); medians are compared
#   P2P_BENCH_THREADS  I/O threads of both servers (default 2)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=scripts/pg.sh
source scripts/pg.sh

[ -n "${P2P_BENCH_SKIP_SETUP:-}" ] || scripts/setup.sh >/dev/null
cmake --build build --target bench-hello-server >/dev/null  # (not built by default)
command -v wrk >/dev/null || { apt-get install -y -q wrk >/dev/null 2>&1 || sudo apt-get install -y -q wrk >/dev/null; }
seconds=${P2P_BENCH_SECONDS:-10}
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
  P2P_TOKEN_ENCRYPTION_KEY="$(openssl rand -base64 32)" \
  P2P_HTTP_THREADS="$threads" build/p2p-exchange >"$work/service.log" 2>&1 &
service_pid=$!
until curl -fsS "http://127.0.0.1:$http_port/readyz" >/dev/null 2>&1; do
  kill -0 "$service_pid" 2>/dev/null || { echo "the service exited:" >&2; cat "$work/service.log" >&2; exit 1; }
  sleep 0.2
done
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
hello_port=$(pg_free_port)
build/bench-hello-server "$hello_port" "$threads" >/dev/null &
hello_pid=$!
hello_url="http://127.0.0.1:$hello_port/"
until curl -fsS "$hello_url" >/dev/null 2>&1; do sleep 0.1; done
curl -fsS -H "Authorization: Bearer $key" "$url" >/dev/null
wrk -t2 -c64 -d3s -H "Authorization: Bearer $key" "$url" >/dev/null  # warm-up
wrk -t2 -c64 -d3s "$hello_url" >/dev/null

# The machine is shared and noisy: alternate the two servers over several rounds and compare medians.
rounds=${P2P_BENCH_ROUNDS:-3}
for round in $(seq 1 "$rounds"); do
  wrk -t2 -c64 -d"${seconds}s" --latency -H "Authorization: Bearer $key" "$url" >"$work/service.$round.txt"
  wrk -t2 -c64 -d"${seconds}s" --latency "$hello_url" >"$work/hello.$round.txt"
  echo "round $round: service $(rps "$work/service.$round.txt") req/s, p99 $(p99_ms "$work/service.$round.txt") ms;" \
       "ceiling $(rps "$work/hello.$round.txt") req/s, p99 $(p99_ms "$work/hello.$round.txt") ms"
done
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
service_rps=$(for f in "$work"/service.*.txt; do rps "$f"; done | median)
hello_rps=$(for f in "$work"/hello.*.txt; do rps "$f"; done | median)
service_p99=$(for f in "$work"/service.*.txt; do p99_ms "$f"; done | median)
hello_p99=$(for f in "$work"/hello.*.txt; do p99_ms "$f"; done | median)
awk -v s="$service_rps" -v h="$hello_rps" -v sp="$service_p99" -v hp="$hello_p99" -v r="$rounds" -v d="$seconds" 'BEGIN {
  printf "\nmedians of %d rounds of %ds, 64 connections, GET /api/oidc_servers/1\n", r, d
  printf "%-28s %12s %10s\n", "", "requests/s", "p99 (ms)"
  printf "%-28s %12.0f %10.2f\n", "p2p-exchange (PostgreSQL)", s, sp
  printf "%-28s %12.0f %10.2f\n", "bare Beast hello (ceiling)", h, hp
  printf "ratio service/ceiling: %.2f   (target >= 0.60, p99 < 10 ms)\n", s / h
}'
grep -E "p2p_oidc_server_cache_total" <(curl -fsS "http://127.0.0.1:$http_port/metrics") || true
