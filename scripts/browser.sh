#!/usr/bin/env bash
# Installs what the browser tests need, idempotently: Debian's chromium
# (never a browser download: those fail here) and playwright-core from npm
# into browser-tests/node_modules (from the committed package-lock.json).
# Used by scripts/services.sh; cloakroom-cli/tests/browser.rs runs the tests.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
  echo "installing Debian's chromium"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null
fi

if ! command -v npm >/dev/null; then
  echo "npm not found: the browser tests cannot be installed" >&2
  exit 1
fi
cd browser-tests
# playwright-core carries no browser; this keeps any other package from
# trying to fetch one.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
if [ -d node_modules/playwright-core ] && [ node_modules/.package-lock.json -nt package-lock.json ]; then
  echo "browser-tests: node_modules up to date"
elif [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
else
  npm install --no-audit --no-fund --loglevel=error
fi
echo "browser tests ready: $(/usr/bin/chromium --version 2>/dev/null || echo 'chromium ?'), playwright-core $(node -p 'require("playwright-core/package.json").version')"
