# Sourced by the top-level scripts: run the calling script as root. As root nothing happens (a bare
# Debian machine has no sudo, and needs none); otherwise the script re-executes itself through
# sudo when sudo exists, and stops with a clear message when it does not.
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    exec sudo --preserve-env=PATH,CARGO_HOME,RUSTUP_HOME,CI bash "$0" "$@"
  fi
  echo "$0 installs system packages and starts sshd workers: run it as root (sudo is not installed)" >&2
  exit 1
fi
