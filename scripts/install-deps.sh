#!/usr/bin/env bash
# Installs the Debian 12 packages p2p-exchange needs to build, run and test (only the missing ones).
# Needs root (or sudo) only when something is missing. Node.js 20 + npm must already be present
# (they are on our machines; Debian's own nodejs is too old for the test peers).
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libboost1.81-dev libboost-url1.81-dev
  nlohmann-json3-dev libsimdjson-dev rapidjson-dev libssl-dev zlib1g-dev libpqxx-dev libspdlog-dev libgtest-dev libcurl4-openssl-dev
  postgresql-15 postgresql-client-15 openssl curl ca-certificates
  clang-14 libclang-rt-14-dev docker-compose jq
)
# The browser test (ctest label browser, tests/browser) drives Debian's Chromium with puppeteer-core; the
# demo portal's pages name Liberation Sans. Kept out of PACKAGES, which scripts/check-docker.sh compares
# with the image's build packages: nothing here is needed to build or run the service.
BROWSER_PACKAGES=(chromium fonts-liberation)

missing=()
for package in "${PACKAGES[@]}" "${BROWSER_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing Debian packages: ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "error: run as root or install sudo to install: ${missing[*]}" >&2; exit 1; }
    SUDO=sudo
  fi
  # Boost 1.81's -dev packages conflict with 1.74's: remove those first when present.
  old_boost=$(dpkg-query -W -f='${Package} ${Status}\n' 'libboost*1.74-dev' 2>/dev/null | awk '/install ok installed/ {print $1}' || true)
  if [ -n "$old_boost" ]; then
    echo "==> removing Boost 1.74 development packages (they conflict with 1.81): $old_boost"
    # shellcheck disable=SC2086
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get remove -y -q $old_boost
  fi
  $SUDO apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "error: Node.js 20 and npm are needed for the Swagger UI assets and the test peers" >&2
  exit 1
fi
