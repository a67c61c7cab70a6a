#!/usr/bin/env bash
# Benchmark (not a test): the service's own cost of an exchange. Against fast in-memory FHIR peers
# (tests/bench/fast-peers.mjs: a source serving pre-serialised $everything pages, a target answering
# transactions without storing them), so that the time measured is mostly the service's, unlike
# scripts/bench-exchange.sh whose Medplum peers take ~95% of it. One run measures:
#   a. one job moving P2P_BENCH_RESOURCES resources in pages of P2P_BENCH_PAGE: wall time (POST to
#      COMPLETED, polled every 20 ms), the service's CPU time (its threads' schedstat run time, in ns;
#      utime+stime of /proc/PID/stat when larger, a thread having ended),
#      service CPU µs per resource, resources/s;
#   b. the raw copy baseline (tests/bench/raw-copy.mjs) against the same peers: GET, parse, wrap as a
#      transaction of PUTs, serialise, POST, one page at a time; ratio job wall / raw copy wall;
#   c. P2P_BENCH_JOBS jobs at once (one target patient each): aggregate resources/s, ratio to (a);
#   d. peak RSS: a fresh service process, idle, then P2P_BENCH_JOBS jobs at once of P2P_BENCH_MAX_PAGES
#      pages of about P2P_BENCH_MAX_PAGE_BYTES each (VmHWM of /proc/PID/status).
# A warm-up job runs before a, and is not measured.
# Every job must end COMPLETED with every resource the source served written (the member's own
# Patient is not: MDM is off), and the target must have received exactly that.
#   P2P_BENCH_RESOURCES        resources of the member for a-c (default 20000; rounded up to whole pages)
#   P2P_BENCH_PAGE             resources a page for a-c (default 100)
#   P2P_BENCH_JOBS             concurrent jobs for c and d (default 4)
#   P2P_BENCH_ROUNDS           a and b are run this many times, taking turns (default 3); the summary
#                              shows the round whose ratio a/b is the median, and every round's ratio
#   P2P_BENCH_MAX_PAGE_BYTES   page size for d (default 1048576 = 1 MiB, issue #11's line; 16252928 =
#                              15.5 MiB is the largest under exchange.maxPageBytes = 16 MiB)
#   P2P_BENCH_MAX_PAGES        pages of that size a job in d (default 6)
#   P2P_BENCH_TIMEOUT          seconds a part may take before the run fails (default 1800)
#   P2P_BENCH_SKIP_SETUP       set: do not run scripts/setup.sh, use the build/p2p-exchange there
#   P2P_BENCH_KEEP             set: keep the work folder (logs, results) instead of deleting it
#   P2P_BENCH_LOG_LEVEL        the service's log level (default warn; info logs every request)
#   P2P_BENCH_BINARY           the service binary to measure (default build/p2p-exchange), e.g. a
#                              build of another commit, to compare two builds run after run
#   P2P_BENCH_NODE_ARGS        extra node arguments for the peers, e.g. "--cpu-prof --cpu-prof-dir=DIR"
# The binary is copied from build/ at the start and the copy is run, so a rebuild during the run does
# not change what is measured.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=scripts/pg.sh
source scripts/pg.sh
[ -n "${P2P_BENCH_SKIP_SETUP:-}" ] || scripts/setup.sh >/dev/null
resources=${P2P_BENCH_RESOURCES:-20000}
page=${P2P_BENCH_PAGE:-100}
jobs=${P2P_BENCH_JOBS:-4}
max_page_bytes=${P2P_BENCH_MAX_PAGE_BYTES:-1048576}
max_pages=${P2P_BENCH_MAX_PAGES:-6}
timeout=${P2P_BENCH_TIMEOUT:-1800}
rounds=${P2P_BENCH_ROUNDS:-3}
for v in resources page jobs max_page_bytes max_pages timeout rounds; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "bench-fast: $v must be a positive integer, got '${!v}'" >&2; exit 2; }
done
pages=$(( (resources + page - 1) / page ))

work=$(mktemp -d /tmp/p2p-bench-fast.XXXXXX)
chmod 755 "$work"
pids=()
service_pid=
cleanup() {
  local status=$?
  if [ "$status" != 0 ] && [ -f "$work/service.log" ]; then
    echo "==> bench failed (exit $status); last lines of the service log:" >&2
    tail -n 30 "$work/service.log" >&2 || true
  fi
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pg_stop "$work/data"
  if [ -n "${P2P_BENCH_KEEP:-}" ]; then echo "==> kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

# The build folder may be rebuilt by someone else during the run: measure a copy taken now.
binary=${P2P_BENCH_BINARY:-build/p2p-exchange}
built=$(date -r "$binary" '+%F %T')
cp "$binary" "$work/p2p-exchange"
[ ! -d build/swagger-ui ] || cp -r build/swagger-ui "$work/swagger-ui"
service_bin=$work/p2p-exchange
version=$("$service_bin" --version 2>&1) || { echo "bench-fast: the copied build/p2p-exchange does not run (being rebuilt?): $version" >&2; exit 1; }
echo "==> service: $version, $binary of $built, run from a copy"
clk_tck=$(getconf CLK_TCK)

start_peer() {  # name, args... ; sets peer_base to the ready line's base (no subshell: pids must stick)
  local name=$1 waited=0 pid; shift
  node ${P2P_BENCH_NODE_ARGS:-} tests/bench/fast-peers.mjs "$@" >"$work/$name.out" 2>"$work/$name.err" &
  pid=$!
  pids+=("$pid")
  until [ -s "$work/$name.out" ]; do
    kill -0 "$pid" 2>/dev/null || { echo "peer $name exited:" >&2; cat "$work/$name.err" >&2; return 1; }
    waited=$((waited + 1)); [ "$waited" -lt 1200 ] || { echo "peer $name is not ready after 120 s" >&2; return 1; }
    sleep 0.1
  done
  peer_base=$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1],"utf8").split("\n")[0]).base)' "$work/$name.out")
}
echo "==> starting the fast peers ($pages pages of $page; $max_pages pages of <= $max_page_bytes bytes)"
start_peer source --role source --patient m1 --pages "$pages" --per-page "$page"; source_base=$peer_base; source_peer=${pids[-1]}
start_peer big-source --role source --patient m1 --pages "$max_pages" --page-bytes "$max_page_bytes"; big_base=$peer_base; big_peer=${pids[-1]}
start_peer target --role target; target_base=$peer_base; target_peer_pid=${pids[-1]}
sed 's/^/    /' "$work/source.err" "$work/big-source.err"
control() { echo "${1%/fhir}"; }  # the peers' /__control routes are at the root

pg_port=$(pg_start_on_free_port "$work/data" "-c fsync=off")
psql -X -q -h 127.0.0.1 -p "$pg_port" -U postgres -c "CREATE DATABASE p2p"

# exchange.maxPageBytes is set only when this build knows it (older builds refuse unknown keys).
key=$(openssl rand -hex 32)
token_key=$(openssl rand -base64 32)
http_port=$(pg_free_port)
service_env=(P2P_DATABASE_URL="postgresql://postgres@127.0.0.1:$pg_port/p2p" P2P_API_KEYS="$key" P2P_HTTP_PORT="$http_port"
             P2P_TOKEN_ENCRYPTION_KEY="$token_key" P2P_FHIR_PERSISTENCE_URL="$target_base" P2P_ALLOW_PLAIN_HTTP=true
             P2P_EXCHANGE_CONCURRENCY="$jobs" P2P_LOG_LEVEL="${P2P_BENCH_LOG_LEVEL:-warn}")
echo '{"exchange": {"maxPageBytes": 16777216}}' >"$work/config.json"
if env "${service_env[@]}" "$service_bin" --config "$work/config.json" --check-config >"$work/check-config.txt" 2>&1; then
  max_page_setting="exchange.maxPageBytes = 16777216"
else
  echo '{}' >"$work/config.json"
  max_page_setting="no exchange.maxPageBytes in this build (maxResponseBytes 64 MiB applies)"
fi
echo "==> configuration: $max_page_setting"

start_service() {
  env "${service_env[@]}" "$service_bin" --config "$work/config.json" >>"$work/service.log" 2>&1 &
  service_pid=$!
  pids+=("$service_pid")
  until curl -fsS "http://127.0.0.1:$http_port/readyz" >/dev/null 2>&1; do
    kill -0 "$service_pid" 2>/dev/null || { echo "the service exited:" >&2; cat "$work/service.log" >&2; return 1; }
    sleep 0.1
  done
}
stop_service() {
  local pid rest=()
  kill -TERM "$service_pid"
  wait "$service_pid" 2>/dev/null || true
  for pid in "${pids[@]}"; do [ "$pid" = "$service_pid" ] || rest+=("$pid"); done
  pids=("${rest[@]}")
}
vmhwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$service_pid/status"; }

start_service
server_id() {  # name, issuer, fhir_endpoint: prints the new OIDC server's pid (issuers are unique)
  psql -X -q -t -A -h 127.0.0.1 -p "$pg_port" -U postgres -d p2p -c \
    "INSERT INTO oidc_servers (name, issuer, fhir_endpoint, organization_id) VALUES ('$1', '$2', '$3', 'BENCH') RETURNING pid" | head -n 1
}
source_server=$(server_id 'Bench fast source' 'http://127.0.0.1/issuer/fast' "$source_base")
big_server=$(server_id 'Bench fast source, max-size pages' 'http://127.0.0.1/issuer/big' "$big_base")
api="http://127.0.0.1:$http_port/api/oidc_servers"

# drive.mjs CONFIG_JSON: starts one job per target patient at once, polls them every 20 ms until they
# end (one job: its GET; several: one GET of the server's job list), and checks the outcome against
# what the source served and what the target received. Measures the CPU of the service (and its
# threads), the peers, PostgreSQL and itself meanwhile. Writes the measures to CONFIG.out. Exits 1
# (with the job JSON) when a job does not complete, pauses, or a count differs.
cat >"$work/drive.mjs" <<'JS'
import fs from 'node:fs';
import http from 'node:http';
const cfg = JSON.parse(process.argv[2]);
const auth = { Authorization: `Bearer ${cfg.key}` };
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const fail = (message) => { process.stderr.write(`bench-fast (${cfg.label}): ${message}\n`); process.exit(1); };
// utime + stime, in clock ticks (fields 14 and 15; the name in field 2 may hold spaces)
const ticks = () => {
  const stat = fs.readFileSync(`/proc/${cfg.servicePid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
};
// The service's CPU in seconds, to the nanosecond: the sum of its threads' time on a CPU
// (/proc/PID/task/TID/schedstat, field 1), per thread since `before` (a map tid -> ns). utime + stime
// count in clock ticks (10 ms): on a run of 0.2 s of CPU that is 5% either way. A thread that ended
// between two readings takes its time with it; the tick count (whole process, threads gone included)
// is kept beside it and wins when it is larger by more than a tick or two.
const threadNanos = () => {
  const nanos = new Map();
  for (const tid of fs.readdirSync(`/proc/${cfg.servicePid}/task`)) {
    try {
      nanos.set(tid, Number(fs.readFileSync(`/proc/${cfg.servicePid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]));
    } catch { /* gone */ }
  }
  return nanos;
};
const serviceCpu = () => ({ ticks: ticks(), nanos: threadNanos() });
const cpuBetween = (before, after) => {
  let nanos = 0;
  for (const [tid, n] of after.nanos) nanos += n - (before.nanos.get(tid) ?? 0);
  const byTicks = (after.ticks - before.ticks) / cfg.clkTck;
  return byTicks > nanos / 1e9 + 2.5 / cfg.clkTck ? byTicks : nanos / 1e9;
};
// CPU of the other processes on the machine's cores, to show where the time goes: the peers,
// PostgreSQL (the postmaster and its children) and this driver; and the service's busiest threads.
const ticksOf = (pid) => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(fields[1]), ticks: Number(fields[11]) + Number(fields[12]) };
  } catch {
    return null; // gone
  }
};
const postgres = () => {
  const pids = [cfg.postmasterPid];
  for (const name of fs.readdirSync('/proc')) {
    if (/^[0-9]+$/.test(name) && ticksOf(name)?.ppid === cfg.postmasterPid) pids.push(Number(name));
  }
  return pids;
};
const snapshot = () => {
  const of = (pids) => new Map(pids.map((pid) => [pid, ticksOf(pid)?.ticks ?? 0]));
  const threads = new Map();
  for (const tid of fs.readdirSync(`/proc/${cfg.servicePid}/task`)) {
    threads.set(tid, ticksOf(`${cfg.servicePid}/task/${tid}`)?.ticks ?? 0);
  }
  return { source: of([cfg.sourcePid]), target: of([cfg.targetPid]), postgres: of(postgres()), threads,
           driver: process.cpuUsage() };
};
// seconds of CPU between two snapshots (a process that started in between counts from 0)
const spent = (before, after) => {
  let ticks = 0;
  for (const [pid, t] of after) ticks += t - (before.get(pid) ?? 0);
  return ticks / cfg.clkTck;
};
// node:http on keep-alive connections: fetch() costs several times more CPU per poll
const agent = new http.Agent({ keepAlive: true });
function json(url, init = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: init.method ?? 'GET', headers: init.headers, agent }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => { text += chunk; });
      res.on('end', () => {
        if (res.statusCode < 200 || res.statusCode > 299) fail(`${init.method ?? 'GET'} ${url}: ${res.statusCode} ${text}`);
        resolve(JSON.parse(text));
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(init.body);
  });
}
const source = await json(`${cfg.sourceControl}/__control/stats`);
const expectWritten = source.resources - (source.byType.Patient ?? 0); // the member's own Patient: MDM off
await json(`${cfg.targetControl}/__control/reset`, { method: 'POST' });

const cpu0 = serviceCpu();
const others0 = snapshot();
const t0 = performance.now();
const jobs = await Promise.all(cfg.targets.map(async (patient) => {
  const start = performance.now();
  const created = await json(`${cfg.api}/batch_job`, {
    method: 'POST', headers: { ...auth, 'Content-Type': 'application/json' },
    body: JSON.stringify({ sourcePayer: { oidcToken: 'bench-access-token', patientId: 'm1', fhirBundleRequest: cfg.request },
                           targetPayer: { patientId: patient } }),
  });
  return { id: created.batchJobId, patient, start, end: null, job: created };
}));
const deadline = t0 + cfg.timeoutSeconds * 1000;
while (jobs.some((j) => j.end === null)) {
  await sleep(cfg.pollMs);
  // several jobs: one GET of the server's newest jobs (they are ours) instead of one GET each
  const listed = jobs.length > 1 ? (await json(`${cfg.api}/batch_job?limit=${jobs.length}`, { headers: auth })).jobs : [];
  await Promise.all(jobs.filter((j) => j.end === null).map(async (j) => {
    j.job = listed.find((x) => x.batchJobId === j.id) ?? await json(`${cfg.api}/batch_job/${j.id}`, { headers: auth });
    if (!['STARTING', 'STARTED', 'STOPPING'].includes(j.job.batchStatus)) j.end = performance.now();
    else if (j.job.lastError) fail(`job ${j.id} is paused or retrying: ${JSON.stringify(j.job)}`);
  }));
  if (performance.now() > deadline) fail(`not done after ${cfg.timeoutSeconds} s: ${JSON.stringify(jobs.map((j) => j.job))}`);
}
const cpu1 = serviceCpu();
const others1 = snapshot();
const t1 = Math.max(...jobs.map((j) => j.end));
const threadSeconds = [...others1.threads].map(([tid, t]) => (t - (others0.threads.get(tid) ?? 0)) / cfg.clkTck)
  .sort((x, y) => y - x);
const driver = process.cpuUsage(others0.driver);
const cpuOthers = {
  source: spent(others0.source, others1.source), target: spent(others0.target, others1.target),
  postgres: spent(others0.postgres, others1.postgres), driver: (driver.user + driver.system) / 1e6,
  serviceThreads: threadSeconds.slice(0, 3), serviceThreadCount: threadSeconds.length,
};
for (const j of jobs) {
  if (j.job.batchStatus !== 'COMPLETED') fail(`job ${j.id} ended ${j.job.batchStatus}: ${JSON.stringify(j.job)}`);
  if (j.job.resourcesWritten !== expectWritten || j.job.pagesCompleted !== source.pages ||
      Object.keys(j.job.resourcesSkipped ?? {}).length > 0) {
    fail(`job ${j.id} wrote ${j.job.resourcesWritten} resources in ${j.job.pagesCompleted} pages, skipped ` +
         `${JSON.stringify(j.job.resourcesSkipped)}; the source served ${source.resources} in ${source.pages} pages ` +
         `(${expectWritten} to write): ${JSON.stringify(j.job)}`);
  }
}
const target = await json(`${cfg.targetControl}/__control/stats`);
const n = jobs.length;
const written = expectWritten * n;
const expected = { transactions: source.pages * n, resources: written + source.pages * n, puts: 2 * n };
if (target.transactions !== expected.transactions || target.resources !== expected.resources || target.puts !== expected.puts ||
    (target.byType.Provenance ?? 0) !== expected.transactions) {
  fail(`the target received ${JSON.stringify(target)}; expected ${JSON.stringify(expected)} ` +
       `(one transaction a page: its resources and one Provenance; a tracking Task PUT at the start and the end of each job)`);
}
const result = {
  label: cfg.label, jobs: n, pages: source.pages, resourcesServed: source.resources, resourcesWritten: written,
  largestPageBytes: source.pageBytes.max, wallSeconds: (t1 - t0) / 1000, cpuSeconds: cpuBetween(cpu0, cpu1),
  jobSeconds: jobs.map((j) => (j.end - j.start) / 1000), target,
  // how long each job waited for a runner: createTime to startTime
  queuedSeconds: jobs.map((j) => (Date.parse(j.job.startTime) - Date.parse(j.job.createTime)) / 1000),
  cpuOthers,
};
fs.writeFileSync(cfg.out, JSON.stringify(result));
agent.destroy();
console.log(`    ${n} job(s) COMPLETED: ${written} resources written in ${result.wallSeconds.toFixed(2)} s, ` +
            `service CPU ${result.cpuSeconds.toFixed(2)} s; target got ${target.transactions} transactions, ` +
            `${target.resources} entries, ${(target.bytesReceived / 1048576).toFixed(1)} MiB`);
console.log(`    CPU during the run: service ${result.cpuSeconds.toFixed(2)} s (busiest of its ${cpuOthers.serviceThreadCount} threads: ` +
            `${cpuOthers.serviceThreads.map((x) => x.toFixed(2)).join(', ')} s), source ${cpuOthers.source.toFixed(2)} s, ` +
            `target ${cpuOthers.target.toFixed(2)} s, PostgreSQL ${cpuOthers.postgres.toFixed(2)} s, this poller ${cpuOthers.driver.toFixed(2)} s`);
JS
drive() {  # label, oidc server pid, source base, source peer's process id, fhirBundleRequest, target patients...
  local label=$1 server=$2 base=$3 source_peer_pid=$4 request=$5; shift 5
  local targets; targets=$(printf '%s\n' "$@" | node -e 'console.log(JSON.stringify(require("fs").readFileSync(0,"utf8").trim().split("\n")))')
  node "$work/drive.mjs" "$(cat <<EOF
{"label": "$label", "api": "$api/$server", "key": "$key", "servicePid": $service_pid, "clkTck": $clk_tck,
 "sourceControl": "$(control "$base")", "targetControl": "$(control "$target_base")", "request": "$request",
 "sourcePid": $source_peer_pid, "targetPid": $target_peer_pid, "postmasterPid": $(head -n 1 "$work/data/postmaster.pid"),
 "targets": $targets, "pollMs": 20, "timeoutSeconds": $timeout, "out": "$work/$label.json"}
EOF
)"
}

# A warm-up job first, not measured: the first job of a fresh process also opens its connections to
# PostgreSQL and the peers and faults in its heap (it was 10-20% slower than the next ones).
echo "==> warm-up: one job, not measured"
drive warmup "$source_server" "$source_base" "$source_peer" "Patient/m1/\$everything?_count=$page" t-warmup >/dev/null

# a and b take turns, P2P_BENCH_ROUNDS times: on a shared machine the load changes from one second to
# the next, and each ratio compares a job with the raw copy run right after it.
for round in $(seq 1 "$rounds"); do
  echo "==> a. one job: $resources resources in pages of $page (round $round of $rounds)"
  drive "a$round" "$source_server" "$source_base" "$source_peer" "Patient/m1/\$everything?_count=$page" "t-single-$round"

  echo "==> b. raw copy baseline: GET, parse, transaction of PUTs, POST, one page at a time (round $round of $rounds)"
  curl -fsS -X POST "$(control "$target_base")/__control/reset" >/dev/null
  node tests/bench/raw-copy.mjs "$source_base/Patient/m1/\$everything?_count=$page" "$target_base" >"$work/b$round.json"
  curl -fsS "$(control "$target_base")/__control/stats" >"$work/b$round-target.json"
  # shellcheck disable=SC2016  # JavaScript, not shell
  node -e '
    const [b, t] = process.argv.slice(1).map((f) => JSON.parse(require("fs").readFileSync(f, "utf8")));
    if (t.transactions !== b.pages || t.resources !== b.resources) { console.error("raw copy: the target got", t, "for", b); process.exit(1); }
    console.log(`    ${b.resources} resources in ${b.pages} pages in ${b.seconds.toFixed(2)} s (node CPU ${b.cpuSeconds.toFixed(2)} s)`);
  ' "$work/b$round.json" "$work/b$round-target.json"
done

targets=(); for n in $(seq 1 "$jobs"); do targets+=("t-concurrent-$n"); done
echo "==> c. $jobs jobs at once, same source member, one target patient each"
drive c "$source_server" "$source_base" "$source_peer" "Patient/m1/\$everything?_count=$page" "${targets[@]}"
rss_abc_kib=$(vmhwm_kib)

echo "==> d. peak RSS: a fresh service process, then $jobs jobs at once of $max_pages pages of <= $max_page_bytes bytes"
stop_service
start_service
sleep 1
rss_idle_kib=$(vmhwm_kib)
targets=(); for n in $(seq 1 "$jobs"); do targets+=("t-big-$n"); done
drive d "$big_server" "$big_base" "$big_peer" "Patient/m1/\$everything" "${targets[@]}"
rss_big_kib=$(vmhwm_kib)

# Anything the service logged at warning level or above.
grep -E '^[0-9TZ:.-]+ (warning|error|critical) ' "$work/service.log" >"$work/service-warnings.txt" || true

node - "$work" "$rss_idle_kib" "$rss_big_kib" "$rss_abc_kib" "$max_page_setting" "$rounds" <<'JS'
const fs = require('fs');
const [dir, idle, big, abc, setting, roundsText] = process.argv.slice(2);
const r = (name) => JSON.parse(fs.readFileSync(`${dir}/${name}.json`, 'utf8'));
const [c, d] = ['c', 'd'].map(r);
// a and b: the round whose ratio is the median (the middle one of an odd number of rounds, the lower
// middle of an even number), so that every line of a and b comes from one pair of runs.
const rounds = [];
for (let i = 1; i <= Number(roundsText); i++) rounds.push({ a: r(`a${i}`), b: r(`b${i}`) });
for (const x of rounds) x.ratio = x.a.wallSeconds / x.b.seconds;
const byRatio = [...rounds].sort((x, y) => x.ratio - y.ratio);
const { a, b } = byRatio[Math.floor((byRatio.length - 1) / 2)];
const perRound = (f) => rounds.map(f).join(', ');
const mib = (kib) => (Number(kib) / 1024).toFixed(1) + ' MiB';
const rate = (x) => x.resourcesWritten / x.wallSeconds;
const list = (xs) => xs.map((s) => s.toFixed(2)).join(', ');
const others = (x) => `peers (source ${x.cpuOthers.source.toFixed(2)} s + target ${x.cpuOthers.target.toFixed(2)} s); ` +
  `PostgreSQL ${x.cpuOthers.postgres.toFixed(2)} s; service's busiest thread ${x.cpuOthers.serviceThreads[0].toFixed(2)} s`;
const us = (x) => (x.cpuSeconds * 1e6 / x.resourcesWritten).toFixed(1);
const rows = [
  ['a. one job, wall', `${a.wallSeconds.toFixed(2)} s`, `${a.resourcesWritten} resources written, ${a.pages} pages, ${Math.round(rate(a))} resources/s; waited for a runner ${list(a.queuedSeconds)} s`],
  ['a. one job, service CPU', `${a.cpuSeconds.toFixed(2)} s`, `${us(a)} µs/resource (${(100 * a.cpuSeconds / a.wallSeconds).toFixed(0)}% of one core)`],
  ['   CPU elsewhere during a', `${(a.cpuOthers.source + a.cpuOthers.target).toFixed(2)} s`, others(a)],
  ['b. raw copy baseline, wall', `${b.seconds.toFixed(2)} s`, `${b.resources} resources, ${b.pages} pages; node CPU ${(b.cpuSeconds * 1e6 / b.resources).toFixed(1)} µs/resource`],
  ['   ratio job wall / raw copy wall', (a.wallSeconds / b.seconds).toFixed(2),
   rounds.length > 1 ? `median of ${rounds.length} rounds (a then b each): ${perRound((x) => x.ratio.toFixed(2))}; ` +
     `service CPU ${perRound((x) => us(x.a))} µs/resource` : ''],
  [`c. ${c.jobs} jobs at once, aggregate`, `${Math.round(rate(c))} res/s`, `${c.resourcesWritten} resources in ${c.wallSeconds.toFixed(2)} s; service CPU ${us(c)} µs/resource`],
  ['   ratio to one job', (rate(c) / rate(a)).toFixed(2), `jobs took ${list(c.jobSeconds)} s, waited for a runner ${list(c.queuedSeconds)} s`],
  ['   CPU elsewhere during c', `${(c.cpuOthers.source + c.cpuOthers.target).toFixed(2)} s`, others(c)],
  ['d. peak RSS, idle fresh service', mib(idle), ''],
  [`d. peak RSS, ${d.jobs} jobs of max-size pages`, mib(big), `${d.pages} pages a job, largest ${d.largestPageBytes} bytes (${(d.largestPageBytes / 1048576).toFixed(2)} MiB); ${d.resourcesWritten} resources in ${d.wallSeconds.toFixed(2)} s`],
  ['   (peak RSS after a-c, first process)', mib(abc), ''],
];
const w0 = Math.max(...rows.map((x) => x[0].length));
const w1 = Math.max(...rows.map((x) => x[1].length));
console.log(`\nsummary (${setting}):`);
for (const [m, v, detail] of rows) console.log(`${m.padEnd(w0)}  ${v.padStart(w1)}  ${detail}`);
JS
if [ -s "$work/service-warnings.txt" ]; then
  echo "service log (warn and above): $(wc -l <"$work/service-warnings.txt") line(s); the first 10:"
  head -n 10 "$work/service-warnings.txt" | cut -c1-300
fi
