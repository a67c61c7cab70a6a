#!/usr/bin/env bash
# Runs every test: installs what the tests need (Debian packages, npm peers from the lock file),
# builds, starts a throwaway PostgreSQL on a free loopback port, runs ctest, tears everything down.
# Exits non-zero on any failure. .ci/run calls exactly this. Everything it runs is deterministic: the
# fuzz targets' committed corpora and regressions are replayed (ctest label fuzz); exploring new inputs
# is scripts/fuzz.sh's job, run on its own (see tests/fuzz/README.md).
#   P2P_BUILD_DIR, P2P_BUILD_TYPE, P2P_CMAKE_ARGS  as for scripts/setup.sh
#   P2P_CTEST_ARGS  extra ctest arguments, e.g. "-L unit" or "-R Config"
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# Everything the tests talk to is on this machine (the docs examples use curl): no proxy from the
# environment in between, while the installs below may still use one for the outside world.
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}"
export no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}"
# shellcheck source=scripts/pg.sh
source scripts/pg.sh

scripts/setup.sh
build_dir=${P2P_BUILD_DIR:-build}

work=$(mktemp -d /tmp/p2p-test.XXXXXX)
chmod 755 "$work"
cleanup() {
  pg_stop "$work/data"
  rm -rf "$work"
}
trap cleanup EXIT
echo "==> starting a throwaway PostgreSQL on a free loopback port"
port=$(pg_start_on_free_port "$work/data" "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
echo "    PostgreSQL is on 127.0.0.1:$port"
export P2P_TEST_DATABASE_URL="postgresql://postgres@127.0.0.1:$port/postgres"

# The tests keep every service log, the service's responses and the secrets made during the run here,
# for scripts/check-secrets.sh.
case $build_dir in /*) ;; *) build_dir="$root/$build_dir" ;; esac
export P2P_TEST_LOG_DIR="$build_dir/test-logs"
rm -rf "$P2P_TEST_LOG_DIR" "$build_dir"/Testing/Temporary/LastTest*.log
mkdir -p "$P2P_TEST_LOG_DIR"

echo "==> running the tests"
# shellcheck disable=SC2086
ctest --test-dir "$build_dir" --output-on-failure -j 2 --timeout 300 ${P2P_CTEST_ARGS:-}

echo "==> checking that no test secret reached a service log or response (scripts/check-secrets.sh)"
shopt -s nullglob
scripts/check-secrets.sh "$P2P_TEST_LOG_DIR" "$build_dir"/Testing/Temporary/LastTest*.log
shopt -u nullglob
