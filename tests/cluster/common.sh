# Shared definitions for the test-cluster scripts (`up`, `down`, `fault`). Sourced, not run.
#
# Addressing: a cluster lives in an address *block* B (1..254). Worker i (1..250) of block B is an
# sshd listening on 127.B.0.i:22 inside its own mount/uts/pid namespace. Block 10 is the default
# for hand use; the Rust harness (tests/support/cluster.rs) takes blocks 20 and up, one per
# running `Cluster`, so parallel test binaries never share an address or a state directory.
#
# State: $MAAND_TESTBED_ROOT/b<B>/ (default root /tmp/maand-testbed). It must live under /tmp:
# the worker's bind mounts read their sources before /tmp is covered (it is bound last), and the
# bind of /tmp then hides the state - including the client key - from the worker itself.

MAAND_TESTBED_ROOT=${MAAND_TESTBED_ROOT:-/tmp/maand-testbed}
WORKER_USER=agent

die() { echo "cluster: $*" >&2; exit 1; }

# check_block B: B is a number in 1..254.
check_block() {
  [[ $1 =~ ^[0-9]+$ ]] && (( $1 >= 1 && $1 <= 254 )) || die "block must be a number in 1..254, got '$1'"
}

block_dir() { echo "$MAAND_TESTBED_ROOT/b$1"; }
worker_addr() { echo "127.$1.0.$2"; }
worker_dir() { echo "$(block_dir "$1")/w$2"; }
nft_table() { echo "maand_testbed_b$1"; }

# parse_addr ADDR: sets BLOCK and INDEX from 127.B.0.I, or dies.
parse_addr() {
  if [[ $1 =~ ^127\.([0-9]+)\.0\.([0-9]+)$ ]]; then
    BLOCK=${BASH_REMATCH[1]}
    INDEX=${BASH_REMATCH[2]}
    check_block "$BLOCK"
  else
    die "'$1' is not a test worker address (expected 127.B.0.I)"
  fi
}

# worker_pid B I: prints the recorded launcher PID if that process is still our worker's
# `unshare` (checked through /proc/PID/cmdline, so a recycled PID is never touched).
worker_pid() {
  local dir pid cmdline state
  dir=$(worker_dir "$1" "$2")
  [[ -f $dir/pid ]] || return 1
  pid=$(<"$dir/pid")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ -r /proc/$pid/cmdline ]] || return 1
  state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
  [[ $state != Z ]] || return 1
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmdline == unshare\ * && $cmdline == *"$dir/"* ]] || return 1
  echo "$pid"
}

# wait_gone PID: waits until PID has exited (or is a zombie nobody reaps).
wait_gone() {
  local n=0 state
  while [[ -e /proc/$1 ]]; do
    state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || break
    [[ $state == Z ]] && break
    (( n++ < 200 )) || die "process $1 did not exit after SIGKILL"
    sleep 0.05
  done
}

# stop_worker B I: SIGKILL the worker's unshare; the namespace's PID 1 (sshd) and everything
# under it die with it. Files stay, as after a power cut.
stop_worker() {
  local pid
  if pid=$(worker_pid "$1" "$2"); then
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid"
  fi
  rm -f "$(worker_dir "$1" "$2")/pid"
}

# wait_listening ADDR: waits until something accepts TCP connections on ADDR:22.
wait_listening() {
  local n=0
  until timeout 1 bash -c "exec 3<>/dev/tcp/$1/22" 2>/dev/null; do
    (( n++ < 100 )) || return 1
    sleep 0.1
  done
}

# system_sshd_conflict: succeeds when a wildcard listener on port 22 would shadow the workers.
system_sshd_conflict() {
  ss -ltnH 2>/dev/null | awk '{print $4}' | grep -qE '^(0\.0\.0\.0|\*):22$'
}

# start_worker B I: launch worker I of block B from its state dir and wait until it listens.
start_worker() {
  local i=$2 dir addr
  dir=$(worker_dir "$1" "$2")
  addr=$(worker_addr "$1" "$2")
  : >"$dir/sshd.log"
  # shellcheck disable=SC2016
  setsid unshare --mount --uts --pid --fork --kill-child --mount-proc --propagation private -- sh -ec '
    dir=$1
    mount --bind "$dir/etc-ssh" /etc/ssh
    mount --bind "$dir/hosts" /etc/hosts
    mount --bind "$dir/home" /home/agent
    mount --bind "$dir/opt" /opt
    mount --bind "$dir/var-tmp" /var/tmp
    mount --bind "$dir/tmp" /tmp
    hostname "$2"
    exec /usr/sbin/sshd -D -e -f /etc/ssh/sshd_config
  ' sh "$dir/" "worker$i" </dev/null >>"$dir/sshd.log" 2>&1 &
  echo $! >"$dir/pid"
  if ! wait_listening "$addr"; then
    tail -n 20 "$dir/sshd.log" >&2
    die "worker $addr did not start listening on port 22 (log above, full log in $dir/sshd.log)"
  fi
}

# write_known_hosts B: rewrite the block's known_hosts from the current host key of each worker,
# so clients may check host keys strictly.
write_known_hosts() {
  local state dir type blob rest
  state=$(block_dir "$1")
  : >"$state/known_hosts.new"
  for dir in "$state"/w*; do
    [[ -f $dir/etc-ssh/ssh_host_ed25519_key.pub ]] || continue
    read -r type blob rest <"$dir/etc-ssh/ssh_host_ed25519_key.pub"
    echo "$(worker_addr "$1" "${dir##*/w}") $type $blob" >>"$state/known_hosts.new"
  done
  mv "$state/known_hosts.new" "$state/known_hosts"
}
