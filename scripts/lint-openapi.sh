#!/usr/bin/env bash
# Lint docs/openapi.json with Redocly CLI, configured by docs/redocly.yaml.
# Needs the test peers installed:  npm ci --prefix tests/peers
# Exits non-zero when the document is not valid JSON or has lint errors.
# Extra arguments go to `redocly lint` (e.g. --format=stylish).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REDOCLY="$ROOT/tests/peers/node_modules/.bin/redocly"
DOC="$ROOT/docs/openapi.json"
CONFIG="$ROOT/docs/redocly.yaml"

if [[ ! -x "$REDOCLY" ]]; then
  echo "lint-openapi: Redocly CLI not found at $REDOCLY" >&2
  echo "lint-openapi: install it first: npm ci --prefix tests/peers" >&2
  exit 2
fi

# No telemetry, no update check: this must run without network access.
export REDOCLY_TELEMETRY=off
export REDOCLY_SUPPRESS_UPDATE_NOTICE=true

# Redocly reads the file with a YAML parser, which also accepts YAML that is
# not JSON: check first that the file is strict JSON.
node -e 'JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))' "$DOC" || {
  echo "lint-openapi: $DOC is not valid JSON" >&2
  exit 1
}

exec "$REDOCLY" lint --config "$CONFIG" --lint-config error "$@" "$DOC"
