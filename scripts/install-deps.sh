#!/usr/bin/env bash
# Installs the system packages maand, its tests and its demo need (Debian, as root).
# Safe to re-run: only installs what is missing.
set -euo pipefail

packages=(openssh-server openssh-client rsync sudo make python3 sqlite3 nftables iptables util-linux iproute2 procps ca-certificates git gcc)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Installs Debian packages whose services must not start (their postinst would otherwise
# start a server of its own): the tests start their own, in temp directories.
install_without_starting() {
  echo "installing: $*"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  local guard=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    guard=/usr/sbin/policy-rc.d
  fi
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  if [ -n "$guard" ]; then rm -f "$guard"; fi
}

# Prometheus tests run the real server and check assembled trees with promtool (the Debian
# package ships both).
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  install_without_starting prometheus
fi

# The shared-journal tests (tests/cli_team.rs) run throwaway PostgreSQL clusters with the
# server binaries under /usr/lib/postgresql/*/bin.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  install_without_starting postgresql
fi

# The template converter's tests render every template with Go's own text/template as the
# oracle (tests/go_oracle/main.go, standard library only): they need the `go` command.
if ! command -v go >/dev/null 2>&1; then
  echo "installing: golang-go (the Go template oracle of the template tests)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends golang-go >/dev/null
fi

# Job commands written in TypeScript or JavaScript run with Bun on the operator host; the npm
# package `bun` ships the binary, so npm is all it takes.
if ! command -v bun >/dev/null 2>&1; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "installing: nodejs npm (to install bun)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
  fi
  echo "installing: bun (npm install -g bun)"
  npm install -g bun >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "cargo not found: installing Debian's Rust toolchain (maand needs Rust >= 1.89;"
    echo "if Debian's is older, install a current toolchain with rustup and re-run)"
    apt-get install -y -qq --no-install-recommends cargo rustc >/dev/null
  fi
fi
