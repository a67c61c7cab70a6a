#!/usr/bin/env bash
# Runs the shell examples of the documentation, so the docs cannot rot.
#
#   scripts/check-docs.sh [FILE.md ...]     default: README.md and every docs/*.md
#
# Every fenced code block whose info string is exactly `sh` is run; `sh norun`, `sql`, `json`, `text`
# and any other block is not (the ```sql of docs/admin-sql.md is run by tests/integration/
# admin_sql_doc_test.cpp). The blocks of one document run in order in one bash session
# (set -euo pipefail), from the repository root, with stdin from /dev/null; each block is echoed
# before it runs. A failing block is reported as FILE:LINE (its opening fence) with the line that
# failed, and the script exits 1. A document must finish within P2P_DOCS_TIMEOUT seconds (default 90).
# A document with a block that runs scripts/run.sh, test.sh, setup.sh, install-deps.sh, fuzz.sh, bench-*.sh
# or .ci/run is reported at once and not run at all: those cannot run here (they install, build, serve
# until stopped, run for minutes, or would run this check again); mark such a block `sh norun`.
#
# The sandbox, made fresh by this script (nothing outside it is touched):
#   - a throwaway PostgreSQL cluster (scripts/pg.sh) on a free loopback port, one database per document;
#   - the real test peers from tests/peers, shared by all documents: an OAuth server (oauth-server.mjs),
#     a source FHIR server that checks the member's token with it, and a target FHIR server
#     (fhir-server.mjs); the source holds one member's 62 resources (Patient, Encounter, 60 Observations:
#     2 pages of 40), and the member's Patient exists at the target;
#   - per document, the built service ($P2P_BUILD_DIR/p2p-exchange, default build/) on its own database
#     and port, with an API key, the target FHIR server, plain http allowed (loopback peers) and one
#     source payer, "P2P Source Payer A" (organizationId ABCD), pointing at the peers;
#   - per document, fresh tokens for the member, as a portal gets them when the member signs in.
# Exported to the blocks:
#   P2P_URL                 the service's base URL, e.g. http://127.0.0.1:41234
#   P2P_API_KEY             an API key the service accepts
#   P2P_DATABASE_URL        the service's database (libpq URL, superuser)
#   P2P_BUILD_DIR           absolute path of the build directory holding p2p-exchange
#   P2P_CONFIG_FILE         the service's configuration file
#   P2P_TOKEN_ENCRYPTION_KEY, P2P_FHIR_PERSISTENCE_URL, P2P_ALLOW_PLAIN_HTTP
#                           as given to the service, so a block can start a second instance like it
#   ACCESS_TOKEN, REFRESH_TOKEN   the member's tokens at the source payer
#   SOURCE_PATIENT_ID       the member's Patient id at the source payer
#   TARGET_PATIENT_ID       the member's Patient id at the target (it exists there)
#   P2P_SOURCE_FHIR_URL, P2P_TARGET_FHIR_URL, P2P_OAUTH_ISSUER   the peers
# Background processes a block starts are ended with its document (its own process group).
#
# Needs: the built binary, node with tests/peers/node_modules (npm ci --prefix tests/peers),
# PostgreSQL 15 server binaries, curl, jq, openssl.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=scripts/pg.sh disable=SC1091
source scripts/pg.sh

build_dir=${P2P_BUILD_DIR:-build}
case $build_dir in /*) ;; *) build_dir=$root/$build_dir ;; esac
doc_timeout=${P2P_DOCS_TIMEOUT:-90}
binary=$build_dir/p2p-exchange

fail_setup() {
  echo "check-docs: $*" >&2
  exit 2
}
[ -x "$binary" ] || fail_setup "$binary not found: build it first (scripts/setup.sh, or ninja -C $build_dir p2p-exchange), or set P2P_BUILD_DIR"
for tool in node curl jq openssl awk setsid timeout; do
  command -v "$tool" >/dev/null || fail_setup "$tool is needed to run the docs' examples: install it (Debian: apt-get install $tool)"
done
[ -d tests/peers/node_modules ] || fail_setup "the test peers are not installed: npm ci --prefix tests/peers"

if [ $# -gt 0 ]; then
  docs=("$@")
else
  docs=(README.md)
  for file in docs/*.md; do docs+=("$file"); done
fi

work=$(mktemp -d /tmp/p2p-docs.XXXXXX)
chmod 755 "$work"
peer_pids=()
service_pid=
cleanup() {
  local pid
  if [ -n "$service_pid" ]; then kill "$service_pid" 2>/dev/null || true; wait "$service_pid" 2>/dev/null || true; fi
  for pid in "${peer_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${peer_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pg_stop "$work/pg"
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 143' TERM INT  # so that cleanup runs on Ctrl-C and kill too

# --- extracting the blocks -------------------------------------------------------------------------
# For one document: $dir/script.sh has exactly the document's lines, so bash's line numbers are the
# document's: lines outside `sh` blocks are blank, an opening fence calls __p2p_block LINE, a closing one
# is blank, and the block's lines are kept (less the fence's indentation). $dir/blocks/LINE holds each
# block's text for echoing. Prints the number of `sh` blocks.
extract_blocks() {
  local doc=$1 dir=$2
  mkdir -p "$dir/blocks"
  awk -v dir="$dir" '
    function emit(text) { print text > (dir "/script.sh") }
    BEGIN { open = 0; count = 0 }
    {
      line = $0
      if (!open) {
        if (match(line, /^[ \t]*(```+|~~~+)/)) {
          indent = RLENGTH; fence = substr(line, RSTART, RLENGTH); sub(/^[ \t]*/, "", fence)
          indent -= length(fence)
          info = substr(line, RSTART + RLENGTH); gsub(/^[ \t]+|[ \t]+$/, "", info)
          open = 1; run = (info == "sh"); fence_char = substr(fence, 1, 1); fence_len = length(fence)
          if (run) { count++; start = NR; emit("__p2p_block " NR) } else emit("")
          next
        }
        emit(""); next
      }
      closing = line; sub(/^[ \t]*/, "", closing); sub(/[ \t]+$/, "", closing)
      if (length(closing) >= fence_len && closing ~ ("^[" fence_char "]+$")) { open = 0; emit(""); next }
      if (!run) { emit(""); next }
      # strip up to the fence'"'"'s indentation
      for (i = 0; i < indent && substr(line, 1, 1) ~ /[ \t]/; i++) line = substr(line, 2)
      emit(line)
      print line > (dir "/blocks/" start)
    }
    END {
      if (open) { print "unclosed code fence" > "/dev/stderr"; exit 3 }
      print "__p2p_done" > (dir "/script.sh")
      print count
    }' "$doc"
}

# --- the sandbox -------------------------------------------------------------------------------------
sandbox_started=false
readonly api_key="docs-api-key-0123456789abcdef"
readonly token_key="ZG9jcy10b2tlbi1rZXktMDEyMzQ1Njc4OWFiY2RlZjA="   # base64 of 32 bytes, tests only
readonly client_secret="docs-client-secret"
readonly member=docs-member-1
readonly target_member=t-docs-member-1
oauth_ready='' source_ready='' target_ready=''  # set by await_peer

launch_peer() {  # NAME SCRIPT ARGS...: starts a test peer in the background
  local name=$1 script=$2
  shift 2
  node "tests/peers/$script" "$@" >"$work/$name.ready" 2>"$work/$name.log" &
  peer_pids+=($!)
  printf -v "${name}_pid" '%s' "$!"
}

await_peer() {  # NAME: waits for the peer's ready line and sets ${NAME}_ready to it
  local name=$1 pid_var=${1}_pid i
  for i in $(seq 1 600); do
    if grep -q '"ready":true' "$work/$name.ready" 2>/dev/null; then
      printf -v "${name}_ready" '%s' "$(head -n 1 "$work/$name.ready")"
      return 0
    fi
    kill -0 "${!pid_var}" 2>/dev/null || break
    sleep 0.1
  done
  cat "$work/$name.log" >&2
  fail_setup "test peer $name did not start within 60 s"
}

seed_source() {  # the member's records at the source: Patient, Encounter, Observations
  local token entries i
  token=$(curl -fsS -X POST "$P2P_OAUTH_ISSUER/__control/issue" -H 'Content-Type: application/json' \
    -d '{"sub":"docs-seeder"}' | jq -r .access_token)
  entries=$(jq -n --arg m "$member" '[
    {resource: {resourceType: "Patient", id: $m, name: [{family: "Doe", given: ["Jane"]}]},
     request: {method: "PUT", url: ("Patient/" + $m)}},
    {resource: {resourceType: "Encounter", id: ($m + "-e1"), status: "finished",
                class: {system: "http://terminology.hl7.org/CodeSystem/v3-ActCode", code: "AMB"},
                subject: {reference: ("Patient/" + $m)}},
     request: {method: "PUT", url: ("Encounter/" + $m + "-e1")}}
  ] + [range(0; 60) | tostring | {resource: {resourceType: "Observation", id: ($m + "-o" + .), status: "final",
                code: {text: ("HbA1c " + .)}, subject: {reference: ("Patient/" + $m)},
                encounter: {reference: ("Encounter/" + $m + "-e1")}},
     request: {method: "PUT", url: ("Observation/" + $m + "-o" + .)}}]')
  for i in 0 40; do
    jq -c --argjson from "$i" '{resourceType: "Bundle", type: "transaction", entry: .[$from:$from + 40]}' <<<"$entries" |
      curl -fsS -o /dev/null -X POST "$P2P_SOURCE_FHIR_URL" -H "Authorization: Bearer $token" \
        -H 'Content-Type: application/fhir+json' --data-binary @- ||
      fail_setup "could not seed the source FHIR server"
  done
  # A second member, found by $member-match in the payer-mediated example (docs/api.md): demographics,
  # a member identifier, the Coverage whose member id is on their card, and a few records.
  jq -n '{resourceType: "Bundle", type: "transaction", entry: ([
    {resource: {resourceType: "Patient", id: "docs-member-2", gender: "female", birthDate: "1974-12-25",
                identifier: [{system: "http://old-payer.example.org/umb", value: "UMB-55678"}],
                name: [{family: "Person", given: ["Patricia"]}]},
     request: {method: "PUT", url: "Patient/docs-member-2"}},
    {resource: {resourceType: "Coverage", id: "docs-member-2-cov", status: "active",
                identifier: [{system: "http://old-payer.example.org/member-id", value: "DH10001235"}],
                beneficiary: {reference: "Patient/docs-member-2"},
                payor: [{identifier: {system: "http://hl7.org/fhir/sid/us-npi", value: "9876543210"}}]},
     request: {method: "PUT", url: "Coverage/docs-member-2-cov"}}
  ] + [range(0; 5) | tostring | {resource: {resourceType: "Observation", id: ("docs-member-2-o" + .), status: "final",
                code: {text: ("LDL " + .)}, subject: {reference: "Patient/docs-member-2"}},
     request: {method: "PUT", url: ("Observation/docs-member-2-o" + .)}}])}' |
    curl -fsS -o /dev/null -X POST "$P2P_SOURCE_FHIR_URL" -H "Authorization: Bearer $token" \
      -H 'Content-Type: application/fhir+json' --data-binary @- ||
    fail_setup "could not seed the source FHIR server (second member)"
  curl -fsS -o /dev/null -X PUT "$P2P_TARGET_FHIR_URL/Patient/tgt-123" -H 'Content-Type: application/fhir+json' \
    -d '{"resourceType":"Patient","id":"tgt-123","name":[{"family":"Person","given":["Patricia"]}]}' ||
    fail_setup "could not create the second member at the target FHIR server"
  # The member exists at the target too (the service does not create it).
  curl -fsS -o /dev/null -X PUT "$P2P_TARGET_FHIR_URL/Patient/$target_member" -H 'Content-Type: application/fhir+json' \
    -d "{\"resourceType\":\"Patient\",\"id\":\"$target_member\",\"name\":[{\"family\":\"Doe\",\"given\":[\"Jane\"]}]}" ||
    fail_setup "could not create the member at the target FHIR server"
}

start_sandbox() {
  $sandbox_started && return 0
  sandbox_started=true
  local started=$SECONDS pg_port pg_pid oauth_port
  # PostgreSQL and the peers start at the same time.
  pg_start_on_free_port "$work/pg" "-c fsync=off -c synchronous_commit=off -c full_page_writes=off" >"$work/pg.port" &
  pg_pid=$!
  # All three peers start at once: the OAuth server on a port chosen here, so the source can be told
  # where to introspect tokens before the OAuth server is up (oidc-provider's default route).
  oauth_port=$(pg_free_port)
  launch_peer oauth oauth-server.mjs --port "$oauth_port" --client-id p2p-client --client-secret "$client_secret" \
    --introspection-client-id fhir-rs --introspection-client-secret fhir-secret --scope 'system/*.read'
  launch_peer source fhir-server.mjs --quiet --page-size 40 \
    --introspection-url "http://127.0.0.1:$oauth_port/token/introspection" \
    --introspection-client-id fhir-rs --introspection-client-secret fhir-secret
  launch_peer target fhir-server.mjs --quiet
  await_peer oauth
  P2P_OAUTH_ISSUER=$(jq -r .issuer <<<"$oauth_ready")
  [ "$(jq -r .introspection_endpoint <<<"$oauth_ready")" = "http://127.0.0.1:$oauth_port/token/introspection" ] ||
    fail_setup "the OAuth test peer's introspection endpoint is not $P2P_OAUTH_ISSUER/token/introspection: $oauth_ready"
  await_peer source
  P2P_SOURCE_FHIR_URL=$(jq -r .base <<<"$source_ready")
  await_peer target
  P2P_TARGET_FHIR_URL=$(jq -r .base <<<"$target_ready")
  wait "$pg_pid" || fail_setup "could not start PostgreSQL"
  pg_port=$(cat "$work/pg.port")
  pg_admin_url="postgresql://postgres@127.0.0.1:$pg_port"
  seed_source

  jq -n --arg issuer "$P2P_OAUTH_ISSUER" --arg fhir "$P2P_SOURCE_FHIR_URL" --arg secret "$client_secret" '{
    exchange: {pollIntervalMilliseconds: 200, initialBackoffMilliseconds: 100, maxBackoffSeconds: 2, leaseSeconds: 10},
    oidcServers: [{
      name: "P2P Source Payer A", issuer: $issuer, clientId: "p2p-client", clientSecret: $secret,
      scopes: "openid offline_access patient/*.read", authWellKnown: ($issuer + "/.well-known/openid-configuration"),
      tokenEndpoint: ($issuer + "/token"), fhirEndpoint: $fhir, customTokenParams: "memberId",
      systemScopes: "system/*.read",
      responseType: "code", organizationId: "ABCD", notes: "the docs sandbox: tests/peers"}]}' >"$work/p2p-exchange.json"
  echo "check-docs: sandbox ready in $((SECONDS - started)) s (PostgreSQL 127.0.0.1:$pg_port, peers: $P2P_OAUTH_ISSUER, $P2P_SOURCE_FHIR_URL, $P2P_TARGET_FHIR_URL)"
}

# Starts the service for one document on a fresh database; sets service_pid, service_url, database_url.
start_service() {
  local name=$1 port i
  psql -q -v ON_ERROR_STOP=1 "$pg_admin_url/postgres" -c "CREATE DATABASE \"$name\"" >/dev/null
  database_url="$pg_admin_url/$name"
  port=$(pg_free_port)
  service_url="http://127.0.0.1:$port"
  service_log="$work/$name.service.log"
  env -i PATH="$PATH" HOME="${HOME:-/tmp}" \
    P2P_HTTP_PORT="$port" P2P_DATABASE_URL="$database_url" P2P_API_KEYS="$api_key" \
    P2P_TOKEN_ENCRYPTION_KEY="$token_key" P2P_FHIR_PERSISTENCE_URL="$P2P_TARGET_FHIR_URL" \
    P2P_ALLOW_PLAIN_HTTP=true P2P_LOG_LEVEL=info P2P_SWAGGER_UI_DIR="$root/tests/peers/node_modules/swagger-ui-dist" \
    "$binary" --config "$work/p2p-exchange.json" >"$service_log" 2>&1 &
  service_pid=$!
  for i in $(seq 1 300); do
    if curl -fs -o /dev/null "$service_url/readyz"; then return 0; fi
    kill -0 "$service_pid" 2>/dev/null || break
    sleep 0.1
  done
  tail -n 40 "$service_log" >&2
  fail_setup "the service did not become ready for $doc"
}

stop_service() {
  kill "$service_pid" 2>/dev/null || true
  wait "$service_pid" 2>/dev/null || true
  service_pid=
}

# --- running one document ----------------------------------------------------------------------------
cat >"$work/lib.sh" <<'EOF'
set -euo pipefail
trap 'printf "%s\n" "$LINENO" >"$__P2P_STATE/failed_line"' ERR
__p2p_block() {
  printf '%s\n' "$1" >"$__P2P_STATE/current"
  printf '\n--- %s:%s\n' "$__P2P_DOC" "$1"
  sed 's/^/  $ /' "$__P2P_STATE/blocks/$1"
}
__p2p_done() { : >"$__P2P_STATE/done"; }
EOF

unrunnable='(^|[^[:alnum:]_./-])(\./)?(scripts/(run|test|test-sanitized|setup|install-deps|fuzz|check-docs|bench-[a-z-]+)\.sh|\.ci/run)([^[:alnum:]_./-]|$)'
failures=()
index=0
total_blocks=0
for doc in "${docs[@]}"; do
  [ -f "$doc" ] || fail_setup "$doc: no such file"
  index=$((index + 1))
  state="$work/doc$index"
  count=$(extract_blocks "$doc" "$state") || fail_setup "$doc: cannot extract its code blocks (unclosed code fence?)"
  if [ "$count" = 0 ]; then
    echo "check-docs: $doc: no sh blocks"
    continue
  fi
  total_blocks=$((total_blocks + count))
  # Commands that cannot run in the sandbox, refused before anything of the document runs: they install
  # packages, build into P2P_BUILD_DIR, serve until stopped, run for minutes, or run this check itself.
  refused=false
  for line in $(grep -lE "$unrunnable" "$state"/blocks/* 2>/dev/null | sed 's|.*/||' | sort -n); do
    command=$(grep -oE "$unrunnable" "$state/blocks/$line" | head -n 1 | sed 's/^[^a-z.]*//; s/[^a-z]*$//')
    failures+=("$doc:$line: runs $command, which cannot run in the docs sandbox (it installs, builds, serves until stopped, runs for minutes or runs the tests): mark the block \`sh norun\`")
    refused=true
  done
  if $refused; then
    echo "check-docs: $doc: not run (it has blocks the sandbox cannot run)"
    continue
  fi
  start_sandbox
  start_service "doc$index"
  tokens=$(curl -fsS -X POST "$P2P_OAUTH_ISSUER/__control/issue" -H 'Content-Type: application/json' \
    -d "{\"sub\":\"$member\"}")
  echo "check-docs: $doc: running $count sh block(s)"
  started=$SECONDS
  # The script's first line also loads the helpers (it is blank or a fence in the document).
  sed -i "1s|^|source \"\$__P2P_LIB\"; |" "$state/script.sh"
  set +e
  env __P2P_LIB="$work/lib.sh" __P2P_STATE="$state" __P2P_DOC="$doc" \
    P2P_URL="$service_url" P2P_API_KEY="$api_key" P2P_DATABASE_URL="$database_url" P2P_BUILD_DIR="$build_dir" \
    P2P_CONFIG_FILE="$work/p2p-exchange.json" P2P_TOKEN_ENCRYPTION_KEY="$token_key" \
    P2P_FHIR_PERSISTENCE_URL="$P2P_TARGET_FHIR_URL" P2P_ALLOW_PLAIN_HTTP=true \
    ACCESS_TOKEN="$(jq -r .access_token <<<"$tokens")" REFRESH_TOKEN="$(jq -r .refresh_token <<<"$tokens")" \
    SOURCE_PATIENT_ID="$member" TARGET_PATIENT_ID="$target_member" \
    P2P_SOURCE_FHIR_URL="$P2P_SOURCE_FHIR_URL" P2P_TARGET_FHIR_URL="$P2P_TARGET_FHIR_URL" \
    P2P_OAUTH_ISSUER="$P2P_OAUTH_ISSUER" \
    setsid timeout -s TERM -k 5 "$doc_timeout" bash "$state/script.sh" </dev/null &
  group=$!
  wait "$group"
  rc=$?
  set -e
  kill -TERM -- "-$group" 2>/dev/null || true  # whatever the blocks left running
  block=$(cat "$state/current" 2>/dev/null || echo "?")
  if [ "$rc" = 124 ]; then
    failures+=("$doc:$block: timed out after ${doc_timeout} s")
  elif [ "$rc" != 0 ]; then
    line=$(cat "$state/failed_line" 2>/dev/null || echo "")
    failures+=("$doc:$block: the block failed (exit $rc)${line:+ at $doc:$line}")
  elif [ ! -e "$state/done" ]; then
    failures+=("$doc:$block: the block ended the shell (exit) before the document's last block")
  else
    echo "check-docs: $doc: ok ($((SECONDS - started)) s)"
  fi
  if [ "$rc" != 0 ] || [ ! -e "$state/done" ]; then
    echo "--- last lines of the service log for $doc:"
    tail -n 20 "$service_log"
  fi
  stop_service
done

echo
if [ ${#failures[@]} -gt 0 ]; then
  echo "check-docs: ${#failures[@]} failure(s):"
  printf '  %s\n' "${failures[@]}"
  exit 1
fi
echo "check-docs: every sh block passed ($total_blocks block(s) in ${#docs[@]} document(s), ${SECONDS} s)"
