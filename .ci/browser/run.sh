#!/usr/bin/env bash
# Browser test of the hiegw console in headless Chromium. Installs what it
# needs when missing (Debian's chromium, playwright-core from package-lock.json),
# then runs console.test.mjs against the given binary. Writes docs/console.png.
# Usage: .ci/browser/run.sh path/to/hiegw
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=$(realpath "${1:?usage: run.sh path/to/hiegw}")
export DEBIAN_FRONTEND=noninteractive

if [ ! -x /usr/bin/chromium ]; then
  echo "installing chromium"
  apt-get update -qq
  apt-get install -y -qq chromium >/dev/null
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "installing nodejs and npm"
  apt-get update -qq
  apt-get install -y -qq nodejs npm >/dev/null
fi
cd "$here"
if [ ! -d node_modules/playwright-core ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
# playwright-core never downloads browsers; this one is Debian's.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
node console.test.mjs "$bin"
