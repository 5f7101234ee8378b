#!/usr/bin/env bash
# The whole test suite, on a fresh machine or a developer's: installs what the
# tests need when it is missing, then runs every test. With CI=true a missing
# dependency that cannot be installed is a failure, never a silent skip.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the integration tests drive for real (proxy, browser, redis...).
# Each entry: "command-that-must-exist:debian-package".
SYSTEM_DEPS=(
  "redis-server:redis-server"
  "chromium:chromium"             # tests/browser_e2e.rs: headless browser
  "chromedriver:chromium-driver"  # tests/browser_e2e.rs: its WebDriver
  "tinyproxy:tinyproxy"           # tests/proxy.rs: a real HTTP CONNECT proxy
)

missing=()
for dep in "${SYSTEM_DEPS[@]}"; do
  cmd="${dep%%:*}"; pkg="${dep##*:}"
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "test.sh: installing ${missing[*]}" >&2
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo-nextest >/dev/null 2>&1; then
  echo "test.sh: installing cargo-nextest" >&2
  cargo install --locked cargo-nextest
fi

# Formatting and lints are part of the suite where the toolchain has rustfmt
# and clippy; under CI a missing one is a failure.
if cargo fmt --version >/dev/null 2>&1; then
  cargo fmt --all -- --check
elif [ "${CI:-}" = "true" ]; then
  echo "test.sh: rustfmt is required under CI" >&2; exit 1
else
  echo "test.sh: rustfmt not installed, formatting not checked" >&2
fi
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --workspace --all-targets --locked -- -D warnings
elif [ "${CI:-}" = "true" ]; then
  echo "test.sh: clippy is required under CI" >&2; exit 1
else
  echo "test.sh: clippy not installed, lints not checked" >&2
fi
# Benchmarks are built, not judged.
cargo build --workspace --all-targets --locked
if [ -d web/test ] && command -v node >/dev/null 2>&1; then
  node --test web/test/
elif [ -d web/test ] && [ "${CI:-}" = "true" ]; then
  echo "test.sh: node is required for web/test under CI" >&2; exit 1
fi
cargo nextest run --workspace --locked --no-fail-fast "$@"
