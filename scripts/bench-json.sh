#!/usr/bin/env bash
# Benchmark (not a test): the JSON libraries Debian packages for speed, on one real page (issue #11).
# Fetches page 2 of a member's $everything from the fast source peer (tests/bench/fast-peers.mjs: 100
# realistic ~1.2 KB resources with references between them), builds bench-json-libraries
# (tests/bench/json_libraries.cpp) twice (portable, and for Haswell when this CPU has AVX2) and runs it: each library parses the page, visits every value and
# writes it back out; today's nlohmann::json page path (parse, transform_page, dump) runs beside them.
#   P2P_BENCH_PAGE        resources a page (default 100)
#   P2P_BENCH_ITERATIONS  pages each candidate handles per timed run (default 100; 7 runs, interleaved,
#                         the best of each candidate kept)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
page=${P2P_BENCH_PAGE:-100}
iterations=${P2P_BENCH_ITERATIONS:-100}
build_dir=${P2P_BUILD_DIR:-build}
[ -d "$build_dir" ] || scripts/setup.sh >/dev/null
cmake --build "$build_dir" --target bench-json-libraries-portable bench-json-libraries-haswell \
  -j "${P2P_BUILD_JOBS:-2}" >/dev/null

work=$(mktemp -d /tmp/p2p-bench-json.XXXXXX)
peer=
cleanup() {
  [ -z "$peer" ] || kill "$peer" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
node tests/bench/fast-peers.mjs --role source --pages 3 --per-page "$page" --quiet >"$work/source.out" &
peer=$!
for _ in $(seq 1 100); do
  grep -q '"ready":true' "$work/source.out" 2>/dev/null && break
  sleep 0.1
done
base=$(sed -n 's/.*"base":"\([^"]*\)".*/\1/p' "$work/source.out")
[ -n "$base" ] || { echo "bench-json: the source peer did not start" >&2; exit 1; }
curl -fsS "$base/Patient/m1/\$everything?page=2" -o "$work/page.json"
echo "== built as the service is (portable x86-64)"
"$build_dir/bench-json-libraries-portable" "$work/page.json" "$iterations"
if grep -qw avx2 /proc/cpuinfo; then
  echo "== built for Haswell and later (-march=haswell: AVX2)"
  "$build_dir/bench-json-libraries-haswell" "$work/page.json" "$iterations"
fi
