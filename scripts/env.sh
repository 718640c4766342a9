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
# The binary a script runs: the workspace's, built first so a script never
# measures code older than the tree (cargo does nothing when it is
# current), or the one STRATA_BIN names, which must exist.
require_strata_bin() {
  if [ "$STRATA_BIN" = "$CARGO_TARGET_DIR/debug/strata" ]; then
    cargo build --quiet -p runner --manifest-path "$STRATA_SRC/Cargo.toml"
  fi
  [ -x "$STRATA_BIN" ] || { echo "$(basename "$0"): no strata binary at $STRATA_BIN" >&2; exit 1; }
}
# Base images are built once and cached here between runs.
export STRATA_CACHE="${STRATA_CACHE:-/var/tmp/strata-cache}"
# FUSE over io_uring: Linux's switch for it covers the whole host and is off
# by default. set_fuse_uring Y|N sets it for a script's run (false where the
# kernel has none), remembering the value found for restore_fuse_uring,
# which the script's EXIT trap calls.
FUSE_URING_SWITCH=/sys/module/fuse/parameters/enable_uring
set_fuse_uring() {
  [ -w "$FUSE_URING_SWITCH" ] || return 1
  fuse_uring_was=$(cat "$FUSE_URING_SWITCH")
  echo "$1" >"$FUSE_URING_SWITCH"
}
restore_fuse_uring() {
  [ -z "${fuse_uring_was:-}" ] || echo "$fuse_uring_was" >"$FUSE_URING_SWITCH"
}
