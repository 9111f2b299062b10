#!/usr/bin/env bash
# One command from a fresh Debian machine (as root) to a running demo:
#   installs packages, builds maand (release), starts 3 real sshd workers on 127.10.0.1-3
#   (tests/cluster), creates a bucket in ./demo-bucket from examples/demo, builds it, deploys it
#   and shows `maand cat deployments`.
# Re-running is safe: the cluster is reused and the bucket is rebuilt from scratch.
# Stop the workers afterwards with: tests/cluster/down
set -euo pipefail
# shellcheck source=scripts/as-root.sh
source "$(dirname "$0")/as-root.sh"
cd "$(dirname "$0")/.."
root=$(pwd)
bash scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"

echo "== building maand (release)"
cargo build --release --locked --quiet
maand="$root/target/release/maand"

echo "== starting 3 workers (tests/cluster/up 3)"
env_file=$(mktemp)
tests/cluster/up 3 >"$env_file"
# shellcheck disable=SC1090
source "$env_file"
rm -f "$env_file"

bucket="$root/demo-bucket"
echo "== creating the bucket $bucket"
rm -rf "$bucket"
mkdir -p "$bucket"
cd "$bucket"
"$maand" init
install -m 0600 "$MAAND_TESTBED_KEY" secrets/worker.key
# Trust exactly the workers' host keys (maand checks them strictly after the first contact).
install -m 0600 "$MAAND_TESTBED_KNOWN_HOSTS" secrets/known_hosts
cp -r "$root/examples/demo/jobs/." workspace/jobs/
IFS=, read -r -a hosts <<<"$MAAND_TESTBED_HOSTS"
{
  echo "["
  for i in "${!hosts[@]}"; do
    labels='"web"'
    [ "$i" -eq 0 ] && labels='"web", "greeter"'
    sep=","; [ "$i" -eq $((${#hosts[@]} - 1)) ] && sep=""
    echo "  {\"host\": \"${hosts[$i]}\", \"labels\": [$labels], \"memory\": \"1 gb\", \"cpu\": \"1 ghz\", \"tags\": {\"zone\": \"z$i\"}}$sep"
  done
  echo "]"
} > workspace/workers.json

echo "== maand build"
"$maand" build
"$maand" info

echo "== maand deploy"
"$maand" deploy
echo "== maand cat deployments"
"$maand" cat deployments
echo
echo "bucket: $bucket   workers: $MAAND_TESTBED_HOSTS   stop them with: tests/cluster/down"
