#!/usr/bin/env bash
# CI's second variant: the whole test suite built with AddressSanitizer and UndefinedBehaviorSanitizer
# (-DP2P_SANITIZE=ON, Debug, in build-asan), run by scripts/test.sh. A sanitizer report aborts the
# process that made it (-fno-sanitize-recover=all), so it fails the test that ran it; a leak found at a
# service's exit makes it exit non-zero, which the end-to-end tests check.
# It runs the unit, integration and e2e tests and replays the fuzz corpora and regressions (label fuzz)
# under the sanitizers. Skipped here, because the build flavour does not change them and the normal
# run has them: the ctest labels lint (OpenAPI lint, the dependency list, the secrets check's
# self-test), docs (the docs' examples) and docker. The secrets check runs on this variant's logs too.
#   P2P_BUILD_DIR   build folder (default: build-asan)
#   P2P_CTEST_ARGS  ctest arguments (default: -L '^(unit|integration|e2e|fuzz)$')
set -euo pipefail
cd "$(dirname "$0")/.."
export P2P_BUILD_DIR=${P2P_BUILD_DIR:-build-asan}
export P2P_BUILD_TYPE=Debug
export P2P_CMAKE_ARGS="-DP2P_SANITIZE=ON ${P2P_CMAKE_ARGS:-}"
export P2P_CTEST_ARGS=${P2P_CTEST_ARGS:--L ^(unit|integration|e2e|fuzz)\$}
exec scripts/test.sh
