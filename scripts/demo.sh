#!/usr/bin/env bash
# One command to see the member connect flow in a browser: starts, on this machine only (loopback),
#   - a throwaway PostgreSQL (scripts/pg.sh) for p2p-exchange,
#   - the old payer: an OAuth server with its own login and consent pages (tests/peers/oauth-server.mjs
#     --interactive) and a FHIR server holding a sample member's records (tests/peers/fhir-server.mjs),
#   - the new payer: its FHIR server, p2p-exchange (build/p2p-exchange) and the member portal
#     (examples/member-portal),
# prints the portal's URL and the sample member's login, and stops everything on Ctrl-C.
# The orchestration is tests/browser/stack.mjs, shared with the browser test (ctest label browser).
#   P2P_DEMO_PORTAL_PORT   the portal's port (default 8090; any free port when taken)
#   P2P_DEMO_SERVICE_PORT  p2p-exchange's port (default 8080; any free port when taken)
#   P2P_DEMO_PAGE_DELAY_MS how late the old payer answers each page of records (default 1200), so that the
#                          progress bar fills visibly; 0 for full speed
#   P2P_BUILD_DIR          the build folder holding p2p-exchange (default build)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# Everything the demo talks to is on this machine.
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}"
export no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}"
# shellcheck source=scripts/pg.sh
source scripts/pg.sh

build_dir=${P2P_BUILD_DIR:-build}
case $build_dir in /*) ;; *) build_dir="$root/$build_dir" ;; esac
if [ ! -x "$build_dir/p2p-exchange" ] || [ ! -f tests/peers/node_modules/.p2p-installed ] ||
  [ tests/peers/package-lock.json -nt tests/peers/node_modules/.p2p-installed ]; then
  echo "==> setting up first (scripts/setup.sh: packages, npm peers, build)"
  scripts/setup.sh
fi
command -v psql >/dev/null || { echo "error: psql is missing: run scripts/install-deps.sh" >&2; exit 1; }

work=$(mktemp -d /tmp/p2p-demo.XXXXXX)
chmod 755 "$work"
logs="$root/.data/demo-logs"
rm -rf "$logs"
mkdir -p "$logs"
cleanup() {  # shellcheck disable=SC2317  # run by the traps
  trap - INT TERM EXIT
  echo "==> stopping PostgreSQL"
  pg_stop "$work/pg"
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "==> starting a throwaway PostgreSQL on a free loopback port"
pg_port=$(pg_start_on_free_port "$work/pg" "-c fsync=off -c synchronous_commit=off")

# In the foreground: Ctrl-C reaches node, which stops every process it started, then the trap above
# stops PostgreSQL.
node tests/browser/demo.mjs \
  --database-url "postgresql://postgres@127.0.0.1:$pg_port/postgres" \
  --service-binary "$build_dir/p2p-exchange" \
  --log-dir "$logs" \
  --portal-port "${P2P_DEMO_PORTAL_PORT:-8090}" \
  --service-port "${P2P_DEMO_SERVICE_PORT:-8080}" \
  --page-delay-ms "${P2P_DEMO_PAGE_DELAY_MS:-1200}" || status=$?
exit "${status:-0}"
