# Sourced by the other scripts: where cargo builds and where the binary is.
# A rustup install in the user's home serves shells that predate it.
if ! command -v cargo >/dev/null && [ -f "$HOME/.cargo/env" ]; then
  . "$HOME/.cargo/env"
fi
# The target dir lives outside the clone so a fresh clone (as CI makes one)
# reuses the previous RocksDB build; a cold build takes half an hour. An
# ordinary user who cannot write root's builds into their own cache.
if [ -z "${CARGO_TARGET_DIR:-}" ]; then
  CARGO_TARGET_DIR=/var/tmp/strata-target
  if [ "$(id -u)" != 0 ] && [ -e "$CARGO_TARGET_DIR" ] && [ ! -w "$CARGO_TARGET_DIR" ]; then
    CARGO_TARGET_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/strata-target"
  fi
fi
export CARGO_TARGET_DIR
export STRATA_BIN="${STRATA_BIN:-$CARGO_TARGET_DIR/debug/strata}"
STRATA_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export STRATA_SRC
# Base images are built once and cached here between runs.
export STRATA_CACHE="${STRATA_CACHE:-/var/tmp/strata-cache}"
