#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, AddressSanitizer + UndefinedBehaviorSanitizer) and fuzzes each
# for a bounded time, starting from the committed seed corpus (tests/fuzz/corpus/<target>) copied to a
# scratch directory, so what the fuzzer finds never lands in the repository by itself. Before fuzzing,
# the committed corpus and regressions are replayed by the plain runners (ctest -L fuzz).
# Exits non-zero on any crash, leak, timeout or out-of-memory, printing the reproducer's path.
#   scripts/fuzz.sh [target...]        targets: http_request batch_job_body page_transform hook_payload config
#   P2P_FUZZ_BUILD_DIR   build directory (default build-fuzz; configured here when needed)
#   P2P_FUZZ_SECONDS     seconds per target (default 300; 0 builds and replays only)
#   P2P_FUZZ_RSS_MB      memory limit per fuzzer process (default 2048)
#   P2P_FUZZ_RUNS        also stop each target after this many inputs (default: no limit)
#   P2P_FUZZ_SEED        libFuzzer's random seed (default: a new one each run)
# This is the maintainer's exploratory tool, not part of the test command: a time-bounded libFuzzer run
# does not execute the same inputs on every machine (its speed decides how far it gets), so it cannot
# gate. scripts/test.sh replays the committed corpora and regressions instead (ctest label fuzz).
#   P2P_FUZZ_KEEP=1      keep the scratch directory (new corpus entries) even when nothing failed
# Reproduce a crash:  <build>/fuzz/<target>_fuzzer <reproducer>   (or <build>/fuzz/<target>_replay <reproducer>)
# Make it a test:     copy the reproducer to tests/fuzz/regressions/<target>/ (see tests/fuzz/README.md)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

build_dir=${P2P_FUZZ_BUILD_DIR:-build-fuzz}
seconds=${P2P_FUZZ_SECONDS:-300}
rss_mb=${P2P_FUZZ_RSS_MB:-2048}
limits=()
[[ -n ${P2P_FUZZ_RUNS:-} ]] && limits+=(-runs="$P2P_FUZZ_RUNS")
[[ -n ${P2P_FUZZ_SEED:-} ]] && limits+=(-seed="$P2P_FUZZ_SEED")
all_targets=(http_request batch_job_body page_transform hook_payload config)
if [[ $# -gt 0 ]]; then targets=("$@"); else targets=("${all_targets[@]}"); fi
for target in "${targets[@]}"; do
  if [[ ! -f tests/fuzz/${target}_fuzzer.cpp ]]; then
    echo "unknown fuzz target '$target'; the targets are: ${all_targets[*]}" >&2
    exit 2
  fi
done

for tool in clang-14 clang++-14 cmake ninja; do
  if ! command -v "$tool" >/dev/null; then
    echo "$tool is missing: install the Debian packages clang-14 libclang-rt-14-dev cmake ninja-build" >&2
    exit 1
  fi
done

started=$(date +%s)
if [[ ! -f $build_dir/build.ninja ]] || ! grep -q '^P2P_FUZZ:BOOL=ON' "$build_dir/CMakeCache.txt"; then
  echo "==> configuring $build_dir (clang-14, P2P_FUZZ=ON)"
  # -O1 with line tables and without NDEBUG: the usual fuzzing trade-off (assertions of Beast and
  # nlohmann::json stay on, and the instrumented build compiles much faster than -O2 -g).
  CC=clang-14 CXX=clang++-14 cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -gline-tables-only" -DP2P_FUZZ=ON -DP2P_BUILD_TESTS=OFF >/dev/null
fi
build_targets=()
for target in "${targets[@]}"; do build_targets+=("${target}_fuzzer" "${target}_replay"); done
echo "==> building ${build_targets[*]}"
nice -n 10 ninja -C "$build_dir" "${build_targets[@]}"
echo "==> build took $(($(date +%s) - started)) s"

echo "==> replaying the committed corpora and regressions"
replay_regex=$(IFS='|'; echo "^fuzz_replay_(${targets[*]})\$")
ctest --test-dir "$build_dir/tests/fuzz" --output-on-failure -R "$replay_regex"

if [[ $seconds -eq 0 ]]; then
  echo "==> P2P_FUZZ_SECONDS=0: not fuzzing"
  exit 0
fi

work=$(mktemp -d /tmp/p2p-fuzz.XXXXXX)
failed=()
for target in "${targets[@]}"; do
  dir=$work/$target
  mkdir -p "$dir/corpus" "$dir/artifacts"
  cp tests/fuzz/corpus/"$target"/* "$dir/corpus/"
  extra=()
  # Regressions are read as a second corpus (libFuzzer writes new inputs only to the first).
  [[ -d tests/fuzz/regressions/$target ]] && extra+=("tests/fuzz/regressions/$target")
  dict=()
  case $target in
    http_request) dict=(-dict=tests/fuzz/http_request.dict) ;;
    *) dict=(-dict=tests/fuzz/json.dict) ;;
  esac
  echo "==> fuzzing $target for ${seconds}s"
  set +e
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    nice -n 10 "$build_dir/fuzz/${target}_fuzzer" -max_total_time="$seconds" -rss_limit_mb="$rss_mb" \
    -timeout=10 -max_len=8192 -print_final_stats=1 -artifact_prefix="$dir/artifacts/" "${limits[@]}" \
    "${dict[@]}" "$dir/corpus" "${extra[@]}" >"$dir/log" 2>&1
  status=$?
  set -e
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$dir/log" | tail -1)
  found=$(find "$dir/corpus" -type f | wc -l)
  cover=$(grep -o 'cov: [0-9]*' "$dir/log" | tail -1 || true)
  echo "    $target: exit $status, ${execs:-?} runs, ${rate:-?} exec/s, $cover, corpus $found inputs"
  if [[ $status -ne 0 ]]; then
    failed+=("$target")
    echo "---- $target failed; the end of its log ($dir/log):" >&2
    tail -n 60 "$dir/log" >&2
    for reproducer in "$dir"/artifacts/*; do
      [[ -e $reproducer ]] || continue
      echo "REPRODUCER: $reproducer" >&2
      echo "  rerun:   $build_dir/fuzz/${target}_fuzzer $reproducer" >&2
      echo "  keep it: cp $reproducer tests/fuzz/regressions/$target/" >&2
    done
  fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
  echo "==> fuzzing FAILED for: ${failed[*]} (scratch directory kept: $work)" >&2
  exit 1
fi
if [[ ${P2P_FUZZ_KEEP:-0} == 1 ]]; then
  echo "==> no failures; scratch corpora kept in $work"
else
  rm -rf "$work"
  echo "==> no failures"
fi
echo "==> fuzz.sh took $(($(date +%s) - started)) s"
