#!/usr/bin/env bash
# Benchmark (not a test): one member with many resources moved by a batch job, against a baseline that
# only fetches the same pages and posts equivalent transactions back to back with curl (no
# processing), in the same run, with source and target FHIR servers in separate processes. Also
# reports the service's peak RSS, and the API's p99 while several jobs run at once.
#   P2P_BENCH_RESOURCES  resources of the member (default 20000)
#   P2P_BENCH_PAGE       page size (default 40: the Medplum target caps a transaction at 50 updates)
#   P2P_BENCH_JOBS       concurrent jobs for the API latency part (default 20)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=scripts/pg.sh
source scripts/pg.sh
[ -n "${P2P_BENCH_SKIP_SETUP:-}" ] || scripts/setup.sh >/dev/null
command -v wrk >/dev/null || { apt-get install -y -q wrk >/dev/null 2>&1 || sudo apt-get install -y -q wrk >/dev/null; }
resources=${P2P_BENCH_RESOURCES:-20000}
page=${P2P_BENCH_PAGE:-40}
jobs=${P2P_BENCH_JOBS:-20}

work=$(mktemp -d /tmp/p2p-bench-x.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pg_stop "$work/data"
  rm -rf "$work"
}
trap cleanup EXIT

start_peer() {  # name, args... ; prints the ready line's base
  local name=$1; shift
  node tests/peers/fhir-server.mjs --quiet "$@" >"$work/$name.out" 2>"$work/$name.err" &
  pids+=($!)
  until [ -s "$work/$name.out" ]; do sleep 0.1; done
  node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1],"utf8").split("\n")[0]).base)' "$work/$name.out"
}
source_base=$(start_peer source --page-size "$page")
target_base=$(start_peer target)
echo "==> source $source_base, target $target_base"

echo "==> seeding $resources resources for member m1"
node - "$source_base" "$resources" <<'JS'
const [base, total] = [process.argv[2], Number(process.argv[3])];
(async () => {
  const entries = [{ resource: { resourceType: 'Patient', id: 'm1' }, request: { method: 'PUT', url: 'Patient/m1' } }];
  for (let i = 1; i < total; i++) {
    entries.push({ resource: { resourceType: 'Observation', id: 'o' + i, status: 'final', code: { text: 'value ' + i },
                               subject: { reference: 'Patient/m1' }, valueQuantity: { value: i, unit: 'mg' } },
                   request: { method: 'PUT', url: 'Observation/o' + i } });
  }
  for (let i = 0; i < entries.length; i += 50) {
    const r = await fetch(base, { method: 'POST', headers: { 'content-type': 'application/fhir+json' },
      body: JSON.stringify({ resourceType: 'Bundle', type: 'transaction', entry: entries.slice(i, i + 50) }) });
    if (r.status !== 200) throw new Error('seed failed: ' + r.status + ' ' + await r.text());
  }
})();
JS

pg_port=$(pg_free_port)
pg_start "$work/data" "$pg_port" "-c fsync=off"
psql -X -q -h 127.0.0.1 -p "$pg_port" -U postgres -c "CREATE DATABASE p2p"
key=$(openssl rand -hex 32)
http_port=$(pg_free_port)
P2P_DATABASE_URL="postgresql://postgres@127.0.0.1:$pg_port/p2p" P2P_API_KEYS="$key" P2P_HTTP_PORT="$http_port" \
  P2P_TOKEN_ENCRYPTION_KEY="$(openssl rand -base64 32)" P2P_FHIR_PERSISTENCE_URL="$target_base" P2P_ALLOW_PLAIN_HTTP=true \
  P2P_EXCHANGE_CONCURRENCY="$jobs" P2P_LOG_LEVEL=warn build/p2p-exchange >"$work/service.log" 2>&1 &
service_pid=$!
pids+=("$service_pid")
until curl -fsS "http://127.0.0.1:$http_port/readyz" >/dev/null 2>&1; do
  kill -0 "$service_pid" 2>/dev/null || { echo "the service exited:" >&2; cat "$work/service.log" >&2; exit 1; }
  sleep 0.2
done
psql -X -q -h 127.0.0.1 -p "$pg_port" -U postgres -d p2p -c \
  "INSERT INTO oidc_servers (name, issuer, fhir_endpoint, organization_id) VALUES ('Bench source', 'http://127.0.0.1/issuer', '$source_base', 'BENCH')"
api="http://127.0.0.1:$http_port/api/oidc_servers/1"
auth="Authorization: Bearer $key"
# start_job TARGET_PATIENT: a member has one active job per target patient (a second is refused with
# 409), so the concurrent jobs below each write for their own target patient.
start_job() {
  curl -fsS -H "$auth" -H 'Content-Type: application/json' \
    -d "{\"sourcePayer\":{\"oidcToken\":\"bench-token\",\"patientId\":\"m1\",\"fhirBundleRequest\":\"Patient/m1/\$everything?_count=$page\"},\"targetPayer\":{\"patientId\":\"$1\"}}" \
    "$api/batch_job" | node -e 'console.log(JSON.parse(require("fs").readFileSync(0)).batchJobId)'
}
wait_job() {
  while :; do
    status=$(curl -fsS -H "$auth" "$api/batch_job/$1" | node -e 'console.log(JSON.parse(require("fs").readFileSync(0)).batchStatus)')
    case $status in COMPLETED) return 0 ;; FAILED|STOPPED) echo "job $1 ended $status" >&2; curl -s -H "$auth" "$api/batch_job/$1" >&2; return 1 ;; esac
    sleep 0.05
  done
}

echo "==> the job: $resources resources in pages of $page"
t0=$(date +%s.%N); id=$(start_job t1); wait_job "$id"; t1=$(date +%s.%N)
job_seconds=$(echo "$t1 - $t0" | bc)
pages=$(curl -fsS -H "$auth" "$api/batch_job/$id" | node -e 'console.log(JSON.parse(require("fs").readFileSync(0)).pagesCompleted)')

echo "==> baseline: curl GET each page, curl POST an equivalent transaction, back to back"
mkdir -p "$work/tx"
node - "$source_base" "$page" "$work/tx" <<'JS'
// Prepared outside the timed loop: each page's URL and a transaction of PUTs of its resources.
const [base, count, dir] = [process.argv[2], process.argv[3], process.argv[4]];
const fs = require('fs');
(async () => {
  let url = `${base}/Patient/m1/$everything?_count=${count}`, i = 0;
  while (url) {
    const page = await (await fetch(url)).json();
    const entry = (page.entry || []).map(e => ({ resource: e.resource, request: { method: 'PUT', url: `${e.resource.resourceType}/${e.resource.id}` } }));
    fs.writeFileSync(`${dir}/${String(i).padStart(5, '0')}.url`, url);
    fs.writeFileSync(`${dir}/${String(i).padStart(5, '0')}.json`, JSON.stringify({ resourceType: 'Bundle', type: 'transaction', entry }));
    url = ((page.link || []).find(l => l.relation === 'next') || {}).url; i++;
  }
})();
JS
t0=$(date +%s.%N)
for f in "$work"/tx/*.json; do
  curl -fsS -o /dev/null -H 'Accept: application/fhir+json' "$(cat "${f%.json}.url")"
  curl -fsS -o /dev/null -H 'Content-Type: application/fhir+json' --data-binary "@$f" "$target_base"
done
t1=$(date +%s.%N)
baseline_seconds=$(echo "$t1 - $t0" | bc)

echo "==> API p99 while $jobs jobs run at once"
ids=(); for n in $(seq 1 "$jobs"); do ids+=("$(start_job "t-concurrent-$n")"); done
sleep 2  # let them get going
wrk -t2 -c16 -d10s --latency -H "$auth" "$api" >"$work/wrk.txt"
running=$(curl -fsS "http://127.0.0.1:$http_port/metrics" | awk '/^p2p_exchange_jobs_running/ {print $2}')
echo "    jobs running at the end of the latency run: $running"
# They need not finish for this part: cancel them and wait until they stop at a page boundary.
for j in "${ids[@]}"; do curl -s -o /dev/null -X POST -H "$auth" "$api/batch_job/$j/cancel"; done
for j in "${ids[@]}"; do wait_job "$j" 2>/dev/null || true; done
p99=$(awk '$1 == "99%" { v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
        if (u == "us") v /= 1000; else if (u == "s") v *= 1000; print v }' "$work/wrk.txt")
rss_kib=$(awk '/VmHWM/ {print $2}' "/proc/$service_pid/status")

awk -v j="$job_seconds" -v b="$baseline_seconds" -v p="$pages" -v r="$resources" -v rss="$rss_kib" -v p99="$p99" -v n="$jobs" 'BEGIN {
  printf "\n%-44s %10s\n", "", "seconds"
  printf "%-44s %10.2f\n", "batch job (" p " pages, " r " resources)", j
  printf "%-44s %10.2f\n", "baseline: curl fetch + post, no processing", b
  printf "ratio job/baseline: %.2f   (target <= 1.0)\n", j / b
  printf "service peak RSS: %.1f MiB   (target < 150 MiB)\n", rss / 1024
  printf "API p99 (GET oidc server) while %d jobs ran: %.2f ms   (target < 20 ms)\n", n, p99
}'
