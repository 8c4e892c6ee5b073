#!/usr/bin/env bash
# A local stand-in for cloud hosts, so `cargo test cloud` runs with no cloud
# account: N network namespaces on a private bridge, each with its own sshd.
#
#   scripts/cloud-standin.sh up N             start N hosts, write the settings
#   scripts/cloud-standin.sh down             stop everything, remove everything
#   scripts/cloud-standin.sh run N -- CMD...  up, run CMD with the settings
#                                             exported, always down; exits
#                                             with CMD's status
#   scripts/cloud-standin.sh status           what is up
#   scripts/cloud-standin.sh bridge           the bridge and key alone; then
#   scripts/cloud-standin.sh host-up ADDR     one host at 10.214.0.X (2-254),
#   scripts/cloud-standin.sh host-down ADDR   namespace dz-h<X>: hosts that
#                                             come and go, as the EC2
#                                             stand-in (scripts/ec2-standin.sh)
#                                             makes them for moto's instances
#
# Layout (root needed: namespaces, veths, a bridge, sshd):
#   bridge dz-br0 10.214.0.1/24 in this namespace (the controller's address)
#   host k (1..N): namespace dz-h<k>, veth dz-v<k> <-> eth0, 10.214.0.(10+k)
#   state in $DZ_STANDIN_STATE (default /run/distzero-standin): a client key
#   (id_ed25519), per host its sshd config, host key, pid file and log, and
#   settings.env (DISTZERO_CLOUD_HOSTS, _SSH_KEY, _USER,
#   _DIR), and cloud/, the hosts' DISTZERO_CLOUD_DIR (agents, their logs and
#   disks), so `down` leaves nothing behind.
#
# Each sshd runs under a tiny reaper (perl, PR_SET_CHILD_SUBREAPER): agents
# that sshd sessions start detached are reparented to it and reaped when
# they die (PID 1 of this machine does not reap orphans). Processes in the
# namespaces share this machine's filesystem and pid space: agents of
# different hosts keep apart by their run-id/machine folders (one
# DISTZERO_CLOUD_DIR serves all hosts; its binary cache is filled atomically).
#
# When br_netfilter makes bridged packets pass this machine's FORWARD chain
# (Docker sets its policy to DROP), one ACCEPT rule for the bridge is added,
# tagged `distzero-standin`, and removed by `down`.
set -euo pipefail

STATE=${DZ_STANDIN_STATE:-/run/distzero-standin}
BRIDGE=dz-br0
PREFIX=10.214.0
CONTROLLER=$PREFIX.1
NS_PREFIX=dz-h
VETH_PREFIX=dz-v
TAG=distzero-standin
MAX_HOSTS=40

say() { echo "cloud-standin: $*" >&2; }
die() { say "error: $*"; exit 1; }

need_root() {
    [ "$(id -u)" = 0 ] || die "needs root (network namespaces, a bridge, sshd); run it with sudo"
}

ensure_tools() {
    local missing=()
    command -v ip >/dev/null || missing+=(iproute2)
    command -v ssh-keygen >/dev/null || missing+=(openssh-client)
    command -v ssh >/dev/null || missing+=(openssh-client)
    [ -x /usr/sbin/sshd ] || missing+=(openssh-server)
    command -v iptables >/dev/null || missing+=(iptables)
    command -v perl >/dev/null || missing+=(perl-base)
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing ${missing[*]} from Debian's packages"
        command -v apt-get >/dev/null || die "apt-get not found: install ${missing[*]} yourself"
        # Never let the package start a system-wide sshd.
        local policy_added=0
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
            chmod 755 /usr/sbin/policy-rc.d
            policy_added=1
        fi
        local rc=0
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2 || rc=$?
        if [ "$rc" != 0 ]; then
            say "apt-get install failed; trying apt-get update first"
            apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2 || rc=$?
        fi
        [ "$policy_added" = 1 ] && rm -f /usr/sbin/policy-rc.d
        [ -x /usr/sbin/sshd ] || die "openssh-server could not be installed (apt-get exit $rc)"
    fi
    mkdir -p /run/sshd
    chmod 755 /run/sshd
}

hosts_up() {
    ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${NS_PREFIX}[0-9]+$" || true
}

# The reaper: makes itself a child subreaper, runs sshd in the foreground,
# reaps every orphan reparented to it, exits once sshd is gone and no child
# is left.
REAPER='
use POSIX ();
syscall(157, 36, 1) == 0 or die "prctl(PR_SET_CHILD_SUBREAPER): $!\n";
my $sshd = fork() // die "fork: $!\n";
if ($sshd == 0) { exec @ARGV or die "exec $ARGV[0]: $!\n"; }
$SIG{TERM} = sub { kill "TERM", $sshd; };
while (1) {
    my $p = waitpid(-1, 0);
    if ($p == -1) { last if $!{ECHILD}; next; }
}
'

check_not_up() {
    if [ -n "$(hosts_up)" ] || ip link show $BRIDGE >/dev/null 2>&1; then
        die "a stand-in is already up (namespaces: $(hosts_up | tr '\n' ' ')); run '$0 down' first"
    fi
}

# The client key, the state folder and the bridge (the controller's side).
bridge_up() {
    ensure_tools
    mkdir -p "$STATE"
    chmod 700 "$STATE"
    if [ ! -f "$STATE/id_ed25519" ]; then
        ssh-keygen -q -t ed25519 -N '' -C distzero-standin -f "$STATE/id_ed25519"
    fi
    cp "$STATE/id_ed25519.pub" "$STATE/authorized_keys"
    chmod 600 "$STATE/authorized_keys"

    ip link add $BRIDGE type bridge
    ip addr add $CONTROLLER/24 dev $BRIDGE
    ip link set $BRIDGE up
    if [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] \
        && [ "$(cat /proc/sys/net/bridge/bridge-nf-call-iptables)" = 1 ]; then
        iptables -w -I FORWARD 1 -i $BRIDGE -o $BRIDGE -m comment --comment $TAG -j ACCEPT
    fi
}

# One host: namespace $NS_PREFIX<k> with address <addr> on the bridge, its
# sshd under the reaper. Does not wait for sshd.
host_start() {
    local k=$1 addr=$2
    local ns=$NS_PREFIX$k veth=$VETH_PREFIX$k dir=$STATE/h$k
    ip netns add "$ns"
    ip link add "$veth" type veth peer name "${veth}p"
    ip link set "${veth}p" netns "$ns"
    ip link set "$veth" master $BRIDGE
    ip link set "$veth" up
    ip netns exec "$ns" ip link set lo up
    ip netns exec "$ns" ip link set "${veth}p" name eth0
    ip netns exec "$ns" ip addr add "$addr/24" dev eth0
    ip netns exec "$ns" ip link set eth0 up
    mkdir -p "$dir"
    [ -f "$dir/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/ssh_host_ed25519_key"
    cat > "$dir/sshd_config" <<EOF
ListenAddress $addr
Port 22
HostKey $dir/ssh_host_ed25519_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $STATE/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PrintMotd no
UseDNS no
MaxStartups 200:30:400
MaxSessions 100
Subsystem sftp internal-sftp
LogLevel INFO
EOF
    # setsid: the reaper outlives this script; stdin/out closed.
    ip netns exec "$ns" setsid perl -e "$REAPER" /usr/sbin/sshd -D -e -f "$dir/sshd_config" \
        </dev/null >"$dir/sshd.log" 2>&1 &
    echo $! > "$dir/reaper.pid"
}

up() {
    local n=$1
    [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le $MAX_HOSTS ] || die "up takes a host count from 1 to $MAX_HOSTS, not '$n'"
    need_root
    check_not_up
    bridge_up

    local hosts=() k
    for k in $(seq 1 "$n"); do
        host_start "$k" "$PREFIX.$((10 + k))"
        hosts+=("root@$PREFIX.$((10 + k))")
    done

    # Wait for every sshd to take a key-only login.
    local deadline=$((SECONDS + 20))
    for k in $(seq 1 "$n"); do
        local addr=$PREFIX.$((10 + k))
        until ssh -q -i "$STATE/id_ed25519" -o BatchMode=yes -o ConnectTimeout=2 \
            -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR \
            "root@$addr" true </dev/null; do
            [ $SECONDS -lt $deadline ] || die "sshd of $NS_PREFIX$k ($addr) did not answer within 20 s; see $STATE/h$k/sshd.log"
            sleep 0.2
        done
    done

    local list
    list=$(IFS=,; echo "${hosts[*]}")
    cat > "$STATE/settings.env" <<EOF
DISTZERO_CLOUD_HOSTS=$list
DISTZERO_CLOUD_USER=root
DISTZERO_CLOUD_SSH_KEY=$STATE/id_ed25519
DISTZERO_CLOUD_DIR=$STATE/cloud
EOF
    say "$n hosts up; settings in $STATE/settings.env:"
    cat "$STATE/settings.env"
}

# Stop one host: everything in its namespace, the namespace, its veth.
host_stop() {
    local k=$1 ns=$NS_PREFIX$1
    # Everything whose network is this namespace: agents, sshd, its reaper.
    # Agents and sshd first, so the reaper collects them (no zombies),
    # then the reaper itself.
    local reaper="" pids p others deadline
    [ -f "$STATE/h$k/reaper.pid" ] && reaper=$(cat "$STATE/h$k/reaper.pid")
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    others=""
    for p in $pids; do [ "$p" = "$reaper" ] || others="$others $p"; done
    if [ -n "$others" ]; then
        # Thaw stopped agents so they die at once.
        kill -CONT $others 2>/dev/null || true
        kill -KILL $others 2>/dev/null || true
    fi
    deadline=$((SECONDS + 3))
    for p in $others; do
        while [ -e "/proc/$p" ] && [ $SECONDS -lt $deadline ]; do sleep 0.05; done
    done
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    [ -n "$pids" ] && kill -KILL $pids 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || say "could not remove namespace $ns"
    ip link del "$VETH_PREFIX$k" 2>/dev/null || true
}

down() {
    trap - EXIT
    need_root
    local ns
    for ns in $(hosts_up); do
        host_stop "${ns#"$NS_PREFIX"}"
    done
    # veths whose namespace is gone already
    for v in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' | grep -E "^${VETH_PREFIX}[0-9]+$" || true); do
        ip link del "$v" 2>/dev/null || true
    done
    ip link del $BRIDGE 2>/dev/null || true
    while iptables -w -D FORWARD -i $BRIDGE -o $BRIDGE -m comment --comment $TAG -j ACCEPT 2>/dev/null; do :; done
    # Reapers that were our children (run mode) are collected here.
    wait 2>/dev/null || true
    if [ -d "$STATE" ]; then
        rm -rf "$STATE"
    fi
    say "down: no namespace, bridge, sshd or agent of the stand-in left"
}

status() {
    local list
    list=$(hosts_up | tr '\n' ' ')
    if [ -z "$list" ]; then
        echo "no stand-in hosts up"
    else
        echo "hosts: $list"
        [ -f "$STATE/settings.env" ] && cat "$STATE/settings.env"
        for ns in $(hosts_up); do
            echo "$ns: $(ip netns pids "$ns" | tr '\n' ' ')"
        done
    fi
}

run() {
    local n=${1:-}
    shift || true
    [ "${1:-}" = "--" ] || die "usage: $0 run N -- COMMAND..."
    shift
    [ $# -gt 0 ] || die "usage: $0 run N -- COMMAND..."
    need_root
    check_not_up
    trap 'down' EXIT
    trap 'exit 130' INT TERM
    up "$n"
    set -a
    # shellcheck disable=SC1091
    . "$STATE/settings.env"
    set +a
    local rc=0
    "$@" || rc=$?
    say "command exited with $rc"
    exit "$rc"
}

case "${1:-}" in
    up)
        [ $# -eq 2 ] || die "usage: $0 up N"
        need_root
        check_not_up
        # A failed start removes what it made.
        trap 'rc=$?; if [ $rc != 0 ]; then say "up failed; removing what it made"; down; fi' EXIT
        up "$2"
        trap - EXIT
        ;;
    down) down ;;
    bridge)
        # The bridge and key alone, for hosts that come and go (host-up,
        # host-down): what scripts/ec2-standin.sh uses.
        [ $# -eq 1 ] || die "usage: $0 bridge"
        need_root
        check_not_up
        trap 'rc=$?; if [ $rc != 0 ]; then say "bridge failed; removing what it made"; down; fi' EXIT
        bridge_up
        cat > "$STATE/settings.env" <<EOF
DISTZERO_CLOUD_USER=root
DISTZERO_CLOUD_SSH_KEY=$STATE/id_ed25519
DISTZERO_CLOUD_DIR=$STATE/cloud
EOF
        trap - EXIT
        ;;
    host-up|host-down)
        # One host at $PREFIX.X (X from 2 to 254): namespace $NS_PREFIX<X>.
        # host-up does not wait for its sshd; both are idempotent.
        [ $# -eq 2 ] || die "usage: $0 $1 $PREFIX.X"
        need_root
        x=${2#"$PREFIX."}
        { [ "$2" = "$PREFIX.$x" ] && [[ "$x" =~ ^[0-9]+$ ]] && [ "$x" -ge 2 ] && [ "$x" -le 254 ]; } \
            || die "$1 takes an address from $PREFIX.2 to $PREFIX.254, not '$2'"
        ip link show $BRIDGE >/dev/null 2>&1 || die "no bridge $BRIDGE: run '$0 bridge' first"
        if [ "$1" = host-up ]; then
            ip netns list | awk '{print $1}' | grep -qx "$NS_PREFIX$x" || host_start "$x" "$2"
        else
            if ip netns list | awk '{print $1}' | grep -qx "$NS_PREFIX$x"; then host_stop "$x"; fi
            rm -rf "${STATE:?}/h$x"
        fi
        ;;
    run) shift; run "$@" ;;
    status) status ;;
    *) echo "usage: $0 up N | down | run N -- COMMAND... | status | bridge | host-up ADDR | host-down ADDR" >&2; exit 2 ;;
esac
