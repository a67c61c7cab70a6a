#!/usr/bin/env bash
# Prepares a checkout: Debian packages, the npm packages (Swagger UI assets and test peers, pinned in
# tests/peers/package-lock.json), and a Release build in build/ with Swagger UI beside the binary.
#   P2P_BUILD_DIR   build folder (default: build)
#   P2P_BUILD_TYPE  CMake build type (default: RelWithDebInfo)
#   P2P_CMAKE_ARGS  extra CMake arguments, e.g. -DP2P_SANITIZE=ON
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build_dir=${P2P_BUILD_DIR:-build}

scripts/install-deps.sh

peers=tests/peers
if [ ! -f "$peers/node_modules/.p2p-installed" ] || [ "$peers/package-lock.json" -nt "$peers/node_modules/.p2p-installed" ]; then
  echo "==> installing npm packages (tests/peers)"
  npm ci --prefix "$peers" --no-audit --no-fund --loglevel=error
  touch "$peers/node_modules/.p2p-installed"
fi

echo "==> building ($build_dir)"
# shellcheck disable=SC2086
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE="${P2P_BUILD_TYPE:-RelWithDebInfo}" ${P2P_CMAKE_ARGS:-} >/dev/null
cmake --build "$build_dir" -j "${P2P_BUILD_JOBS:-2}"

# Swagger UI is served from the folder beside the binary (http.swaggerUiDir overrides it).
mkdir -p "$build_dir/swagger-ui"
cp "$peers"/node_modules/swagger-ui-dist/{swagger-ui.css,swagger-ui-bundle.js,favicon-16x16.png,favicon-32x32.png} "$build_dir/swagger-ui/"
echo "==> ready: $build_dir/p2p-exchange"
