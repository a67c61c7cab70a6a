#!/usr/bin/env bash
# Fails when a known test secret shows up in what the service wrote or answered during a test run.
#
#   scripts/check-secrets.sh LOG_DIR [CTEST_LOG...]
#   scripts/check-secrets.sh --self-test
#
# LOG_DIR is the P2P_TEST_LOG_DIR of the run (scripts/test.sh sets it). The tests leave there:
#   service-*.log      stdout+stderr of every p2p-exchange process the tests started (tests/support/service_process.cpp)
#   responses-*.log    every response (status, headers, body) those processes gave the test client
#                      (tests/support/http_client.cpp)
#   secrets-*.txt      secrets made during the run, one per line: every access and refresh token the OAuth
#                      test peer minted (tests/peers/oauth-server.mjs), the private key of the TLS test
#   peer-*.log         the Node test peers' logs: kept for debugging, NOT searched (the peers stand in for
#                      the source payer's token server, the FHIR server and the mail server, which are given
#                      these secrets legitimately)
# CTEST_LOG files (ctest's Testing/Temporary/LastTest*.log) are searched too: they hold the output of
# every test, including the log lines of the service code the unit and integration tests run in-process.
#
# The fixed secrets below are the tests' own constants. Each is checked to still be in the file that
# defines it, so that renaming or changing one there cannot silently make this check look for nothing.
# Matches are reported by file, line and the secret's name; the secret itself is never printed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

# name | value | the file that must define it (relative to the repository)
fixed_secrets() {
  cat <<'EOF'
API key (kApiKey)|e2e-api-key-0123456789abcdef|tests/e2e/e2e_fixture.hpp
token-encryption key, base64 (kTokenKey)|ZTJlLXRva2VuLWtleS0wMTIzNDU2Nzg5YWJjZGVmMDE=|tests/e2e/e2e_fixture.hpp
OIDC client secret (api_test kClientSecret)|client-secret-never-shown-7Q2x|tests/e2e/api_test.cpp
OIDC client secret (exchange_test kClientSecret)|p2p s3cret+/x|tests/e2e/exchange_fixture.hpp
FHIR server introspection client secret|fhir-secret|tests/e2e/exchange_fixture.hpp
rest-hook secret (kHookSecret)|e2e-hook-secret-0123456789abcdef|tests/e2e/notifications_fixture.hpp
rotated rest-hook secret|another-hook-secret-fedcba9876543210|tests/e2e/notifications_subscription_test.cpp
SMTP password (kSmtpPassword)|e2e-smtp-password-0123456789|tests/e2e/notifications_fixture.hpp
EOF
}

# Forms a secret takes on the wire, derived from the fixed values above.
derived_secrets() {
  local raw_key
  raw_key=$(printf '%s' 'ZTJlLXRva2VuLWtleS0wMTIzNDU2Nzg5YWJjZGVmMDE=' | base64 -d)
  printf '%s\n' "token-encryption key, raw bytes|$raw_key"
  # RFC 6749 2.3.1: HTTP Basic client authentication form-encodes the id and secret first.
  printf '%s\n' "OIDC client secret (exchange_test), form-encoded|p2p+s3cret%2B%2Fx"
  printf '%s\n' "OIDC client credentials (exchange_test), HTTP Basic|$(printf '%s' 'p2p-client:p2p+s3cret%2B%2Fx' | base64 -w0)"
  # SMTP AUTH PLAIN (RFC 4616: NUL user NUL password) and AUTH LOGIN send these (kSmtpUser, kSmtpPassword).
  printf '%s\n' "SMTP credentials, AUTH PLAIN|$(printf '\0%s\0%s' 'e2e-smtp-user' 'e2e-smtp-password-0123456789' | base64 -w0)"
  printf '%s\n' "SMTP password, AUTH LOGIN|$(printf '%s' 'e2e-smtp-password-0123456789' | base64 -w0)"
}

# Searches FILES for every secret in the "name|value" lines of SECRETS_FILE; prints the matches
# (redacted) and returns 1 when there are any.
search() {
  local secrets_file=$1
  shift
  local -A names=()
  local patterns
  patterns=$(mktemp)
  while IFS='|' read -r name value; do
    [ -n "$value" ] || continue
    names["$value"]=$name
    printf '%s\n' "$value" >>"$patterns"
  done <"$secrets_file"
  local found=0 file line match
  while IFS= read -r hit; do
    file=${hit%%:*}
    hit=${hit#*:}
    line=${hit%%:*}
    match=${hit#*:}
    echo "  $file:$line: ${names[$match]:-a secret}" >&2
    found=1
  done < <(grep -F -H -n -o -a -f "$patterns" -- "$@" 2>/dev/null || true)
  rm -f "$patterns"
  return $found
}

check_run() {
  local secrets
  secrets=$(mktemp)
  local status=0
  check_files "$secrets" "$@" || status=$?
  rm -f "$secrets"
  return $status
}

check_files() {
  local secrets=$1 log_dir=$2
  shift 2
  local problems=0
  while IFS='|' read -r name value source; do
    if [ ! -f "$root/$source" ]; then
      echo "check-secrets: $source is missing: update the fixed secret \"$name\" in scripts/check-secrets.sh" >&2
      problems=1
    elif ! grep -qF -- "$value" "$root/$source"; then
      echo "check-secrets: the $name is no longer defined in $source: update its value in scripts/check-secrets.sh" >&2
      problems=1
    fi
    printf '%s|%s\n' "$name" "$value" >>"$secrets"
  done < <(fixed_secrets)
  [ "$problems" = 0 ] || return 1
  derived_secrets >>"$secrets"
  local fixed_count issued_count=0
  fixed_count=$(wc -l <"$secrets")
  shopt -s nullglob
  local file
  for file in "$log_dir"/secrets-*.txt; do
    while IFS= read -r value; do
      [ -n "$value" ] || continue
      printf '%s|%s\n' "a secret made during the run (${file##*/})" "$value" >>"$secrets"
      issued_count=$((issued_count + 1))
    done <"$file"
  done
  local services=("$log_dir"/service-*.log) responses=("$log_dir"/responses-*.log)
  local ctest_logs=()
  for file in "$@"; do [ -f "$file" ] && ctest_logs+=("$file"); done
  shopt -u nullglob
  local files=("${services[@]}" "${responses[@]}" "${ctest_logs[@]}")
  echo "==> secrets check: ${#services[@]} service log(s), ${#responses[@]} response log(s), ${#ctest_logs[@]} ctest log(s);" \
    "$fixed_count fixed secret(s) and $issued_count made during the run"
  if [ ${#files[@]} -eq 0 ]; then
    echo "    nothing to search (no test wrote a log here)"
    return 0
  fi
  if ! search "$secrets" "${files[@]}"; then
    echo "check-secrets: FAILED: the secrets above appear in logs or responses (the service must never log or return them)" >&2
    return 1
  fi
  echo "    no secret found"
}

self_test() {
  local dir status=0
  dir=$(mktemp -d)
  self_test_in "$dir" || status=$?
  rm -rf "$dir"
  return $status
}

self_test_in() {
  local dir=$1
  printf '[info] listening on http://127.0.0.1:8080\n' >"$dir/service-a.log"
  printf '=== GET http://127.0.0.1:8080/api/oidc_servers/1 -> 200\n\n{"clientId":"p2p"}\n' >"$dir/responses-1.log"
  printf 'tOkEn-issued-during-the-run-0123456789abcdefABCD\n' >"$dir/secrets-oauth-1.txt"
  printf 'client secret p2p s3cret+/x in the ctest log\n' >"$dir/LastTest.log"
  check_run "$dir" >/dev/null || { echo "self-test: a clean run was reported" >&2; return 1; }

  local case_file expected
  for case_file in service-b.log responses-2.log; do
    for expected in "e2e-api-key-0123456789abcdef" "tOkEn-issued-during-the-run-0123456789abcdefABCD" \
      "$(printf '%s' 'p2p-client:p2p+s3cret%2B%2Fx' | base64 -w0)" "e2e-smtp-password-0123456789"; do
      printf 'x\nleaked: %s\n' "$expected" >"$dir/$case_file"
      local output
      if output=$(check_run "$dir" 2>&1); then
        echo "self-test: a secret in $case_file was not found" >&2
        return 1
      fi
      if [[ $output == *"$expected"* ]] || [[ $output != *"$dir/$case_file:2: "* ]]; then
        echo "self-test: the report must name $case_file line 2 without printing the secret:" >&2
        echo "$output" >&2
        return 1
      fi
      rm -f "$dir/$case_file"
    done
  done
  if check_run "$dir" "$dir/LastTest.log" >/dev/null 2>&1; then
    echo "self-test: a secret in a ctest log was not found" >&2
    return 1
  fi
  echo "check-secrets self-test passed"
}

case "${1:-}" in
  --self-test) self_test ;;
  "" | -h | --help)
    sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'
    [ -n "${1:-}" ]
    ;;
  *) check_run "$@" ;;
esac
