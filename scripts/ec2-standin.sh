#!/usr/bin/env bash
# A local stand-in for EC2, so cloud mode on provisioned instances runs here
# with no AWS account: moto's EC2 server on loopback, and an SSH host
# (scripts/cloud-standin.sh: a network namespace with its sshd) at the
# private address of every instance moto runs, made when the instance
# appears and removed when it is terminated.
#
#   scripts/ec2-standin.sh install-moto        moto[server] into a venv
#                                              ($DZ_MOTO_VENV, default
#                                              ~/.cache/distzero/moto-venv)
#   scripts/ec2-standin.sh run -- CMD...       moto + bridge + watcher, CMD
#                                              with the EC2 settings exported,
#                                              then check that moto runs no
#                                              instance and remove everything;
#                                              exits with CMD's status (1 if
#                                              an instance was left running)
#
# For example (root: namespaces, a bridge, sshd):
#   scripts/ec2-standin.sh run -- cargo test --test workflows cloud_mode::
#
# In moto: a VPC 10.214.0.0/16 with a subnet 10.214.0.0/24 (moto hands out
# 10.214.0.4, .5, ... in order), the subnet given to cloud mode as
# DISTZERO_EC2_SUBNET. The security group and key pair (the stand-in's key,
# imported) are made per run by cloud mode itself, as on a real account.
# A watcher (python, boto3 from moto's venv) polls DescribeInstances every
# 0.25 s and runs `cloud-standin.sh host-up/host-down` for the addresses of
# pending/running instances.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
STANDIN=$HERE/cloud-standin.sh
VENV=${DZ_MOTO_VENV:-$HOME/.cache/distzero/moto-venv}
PORT=${DZ_MOTO_PORT:-5214}
ENDPOINT=http://127.0.0.1:$PORT
STATE=${DZ_EC2_STANDIN_STATE:-/run/distzero-ec2-standin}

say() { echo "ec2-standin: $*" >&2; }
die() { say "error: $*"; exit 1; }

install_moto() {
    if [ -x "$VENV/bin/moto_server" ] && "$VENV/bin/python" -c 'import boto3, moto' 2>/dev/null; then
        return 0
    fi
    command -v python3 >/dev/null || die "python3 is needed (apt-get install python3 python3-venv)"
    if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
        say "python3 -m venv failed; installing python3-venv"
        apt-get install -y --no-install-recommends python3-venv >&2 \
            || { apt-get update >&2 && apt-get install -y --no-install-recommends python3-venv >&2; } \
            || die "python3-venv could not be installed"
        python3 -m venv "$VENV" || die "python3 -m venv $VENV failed"
    fi
    say "installing moto[server] into $VENV"
    "$VENV/bin/pip" install -q 'moto[server]' >&2 || die "pip install 'moto[server]' failed"
    [ -x "$VENV/bin/moto_server" ] || die "moto_server missing from $VENV after the install"
}

# The watcher: host-up for every pending/running instance's private address,
# host-down for the ones gone. Exits when its parent (this script) is gone.
WATCHER='
import os, subprocess, sys, time
import boto3
endpoint, standin = sys.argv[1], sys.argv[2]
ec2 = boto3.client("ec2", endpoint_url=endpoint, region_name="us-east-1",
                   aws_access_key_id="standin", aws_secret_access_key="standin")
parent = os.getppid()
up = set()
while os.getppid() == parent:
    try:
        want = set()
        pages = ec2.describe_instances(Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}])
        for r in pages["Reservations"]:
            for i in r["Instances"]:
                ip = i.get("PrivateIpAddress") or ""
                if ip.startswith("10.214.0."):
                    want.add(ip)
    except Exception as e:
        print(f"ec2-standin watcher: {e}", file=sys.stderr, flush=True)
        time.sleep(0.5)
        continue
    for ip in sorted(want - up):
        if subprocess.call([standin, "host-up", ip]) == 0:
            up.add(ip)
    for ip in sorted(up - want):
        subprocess.call([standin, "host-down", ip])
        up.discard(ip)
    time.sleep(0.25)
'

# The VPC, the subnet, an image; prints KEY=VALUE lines.
SETUP='
import sys, boto3
ec2 = boto3.client("ec2", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="standin", aws_secret_access_key="standin")
vpc = ec2.create_vpc(CidrBlock="10.214.0.0/16")["Vpc"]["VpcId"]
subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.214.0.0/24")["Subnet"]["SubnetId"]
image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
print(f"DISTZERO_EC2_SUBNET={subnet}")
print(f"DISTZERO_EC2_IMAGE={image}")
'

# What moto still holds of the runs: instances not terminated, security
# groups and key pairs of runs.
LEFT='
import sys, boto3
ec2 = boto3.client("ec2", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="standin", aws_secret_access_key="standin")
total = 0
for r in ec2.describe_instances()["Reservations"]:
    for i in r["Instances"]:
        total += 1
        if i["State"]["Name"] not in ("terminated", "shutting-down"):
            print(i["InstanceId"], i["State"]["Name"], i.get("PrivateIpAddress", "-"))
for g in ec2.describe_security_groups(Filters=[{"Name": "tag-key", "Values": ["distzero-run"]}])["SecurityGroups"]:
    print("security group", g["GroupId"], g["GroupName"])
for k in ec2.describe_key_pairs()["KeyPairs"]:
    if k["KeyName"].startswith("distzero-"):
        print("key pair", k["KeyName"])
print(f"# {total} instance(s) launched in this stand-in", file=sys.stderr)
'

MOTO_PID=""
WATCHER_PID=""

teardown() {
    local rc=$1
    trap - EXIT INT TERM
    if [ -n "$MOTO_PID" ] && kill -0 "$MOTO_PID" 2>/dev/null; then
        local left
        left=$("$VENV/bin/python" -c "$LEFT" "$ENDPOINT" 2>"$STATE/left.err" || echo "moto could not be asked")
        cat "$STATE/left.err" >&2 2>/dev/null || true
        if [ -n "$left" ]; then
            say "moto still holds what runs made (a leak):"
            echo "$left" >&2
            [ "$rc" != 0 ] || rc=1
        else
            say "moto runs no instance and holds no security group or key pair of a run"
        fi
    fi
    if [ -n "$WATCHER_PID" ]; then
        kill "$WATCHER_PID" 2>/dev/null || true
        wait "$WATCHER_PID" 2>/dev/null || true
    fi
    if [ -n "$MOTO_PID" ]; then
        kill "$MOTO_PID" 2>/dev/null || true
        wait "$MOTO_PID" 2>/dev/null || true
    fi
    "$STANDIN" down || true
    rm -rf "$STATE"
    say "done: moto, its watcher and every stand-in host are gone"
    exit "$rc"
}

run() {
    [ "${1:-}" = "--" ] || die "usage: $0 run -- COMMAND..."
    shift
    [ $# -gt 0 ] || die "usage: $0 run -- COMMAND..."
    [ "$(id -u)" = 0 ] || die "needs root (network namespaces, a bridge, sshd); run it with sudo"
    install_moto
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
        die "port $PORT is taken (another stand-in?): set DZ_MOTO_PORT"
    fi
    mkdir -p "$STATE"
    trap 'teardown $?' EXIT
    trap 'exit 130' INT TERM
    "$VENV/bin/moto_server" -H 127.0.0.1 -p "$PORT" >"$STATE/moto.log" 2>&1 &
    MOTO_PID=$!
    local deadline=$((SECONDS + 60))
    until "$VENV/bin/python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/moto-api/", timeout=2)' "$ENDPOINT" 2>/dev/null; do
        kill -0 "$MOTO_PID" 2>/dev/null || die "moto exited; see its log above: $(tail -5 "$STATE/moto.log")"
        [ $SECONDS -lt $deadline ] || die "moto did not answer at $ENDPOINT within 60 s"
        sleep 0.2
    done
    "$STANDIN" bridge
    "$VENV/bin/python" -c "$SETUP" "$ENDPOINT" > "$STATE/settings.env"
    cat "$STANDIN_SETTINGS" >> "$STATE/settings.env"
    cat >> "$STATE/settings.env" <<EOF
DISTZERO_CLOUD_PROVIDER=ec2
DISTZERO_CLOUD_HOSTS=
DISTZERO_EC2_ENDPOINT=$ENDPOINT
DISTZERO_EC2_ADDRESS=private
DISTZERO_EC2_INGRESS_CIDR=10.214.0.0/24
DISTZERO_EC2_BOOT_TIMEOUT=60
AWS_ACCESS_KEY_ID=standin
AWS_SECRET_ACCESS_KEY=standin
AWS_REGION=us-east-1
EOF
    "$VENV/bin/python" -c "$WATCHER" "$ENDPOINT" "$STANDIN" &
    WATCHER_PID=$!
    say "moto at $ENDPOINT, settings:"
    cat "$STATE/settings.env" >&2
    set -a
    # shellcheck disable=SC1091
    . "$STATE/settings.env"
    set +a
    local rc=0
    "$@" || rc=$?
    say "command exited with $rc"
    exit "$rc"
}

STANDIN_SETTINGS=${DZ_STANDIN_STATE:-/run/distzero-standin}/settings.env

case "${1:-}" in
    install-moto) install_moto; say "moto is in $VENV" ;;
    run) shift; run "$@" ;;
    *) echo "usage: $0 install-moto | run -- COMMAND..." >&2; exit 2 ;;
esac
