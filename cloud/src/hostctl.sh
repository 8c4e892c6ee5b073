# distzero hostctl: the host side of distzero-cloud. Installed by the
# controller as <dir>/bin/hostctl-<hash>.sh and run over SSH as
#     sh hostctl-<hash>.sh COMMAND ARGS...
# POSIX sh and coreutils only. Every agent of run R, machine K lives in
# <dir>/R/mK/ (its logs mK.jsonl, mK.log, mK.stderr, its disk data/, its pid
# file agent.pid); <dir>/R/controller names the controller (boot id, pid,
# start time, host name) so a later run can tell a dead run from a live one.
#
# Exit codes: 0 ok; 2 bad use; 3 already running; 4 the agent exited at
# start; 5 the agent does not listen; 6 a signal failed; 7 not running;
# 20 no usable iptables; 75 port busy (pick another); 98 agent binary missing.
set -u

fail() { code=$1; shift; echo "$*"; exit "$code"; }

# A run id or machine number: letters, digits, dashes only (they end up in
# paths that get removed).
safe() { case "$1" in ''|*[!a-zA-Z0-9_-]*) fail 2 "unsafe name '$1'";; esac; }

# Process state letter (R, S, T, Z...), empty if no such process.
pstate() { [ -r "/proc/$1/stat" ] && sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1; }

alive() {
    s=$(pstate "$1")
    [ -n "$s" ] && [ "$s" != Z ] && [ "$s" != X ]
}

# Is pid $1 an agent of run $2 (its command line says so, or, for a test
# binary started as an agent, the arguments in its DISTZERO_AGENT_ARGS,
# separated by U+001F)?
is_agent() {
    case "$1" in ''|*[!0-9]*) return 1;; esac
    alive "$1" || return 1
    tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null | grep -q -e "--run-id $2 " && return 0
    tr '\0\037' '\n ' < "/proc/$1/environ" 2>/dev/null |
        grep -q -e "^DISTZERO_AGENT_ARGS=.*--run-id $2 "
}

wait_gone() { # pid, tenths of a second
    n=0
    while alive "$1"; do
        [ "$n" -ge "$(($2 * 5))" ] && return 1
        sleep 0.02; n=$((n + 1))
    done
    return 0
}

listening() { # port
    hex=$(printf '%04X' "$1")
    cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk -v h="$hex" \
        '$4 == "0A" { n = split($2, a, ":"); if (a[n] == h) f = 1 } END { exit !f }'
}

agent_pid() { # dir run k -> pid of the live agent, or nothing
    pf="$1/$2/m$3/agent.pid"
    [ -f "$pf" ] || return 1
    p=$(cat "$pf" 2>/dev/null)
    is_agent "$p" "$2" && echo "$p"
}

have_iptables() { command -v iptables >/dev/null 2>&1; }

# Delete every INPUT rule tagged with run $1.
clear_rules() {
    have_iptables || return 0
    iptables -w -S INPUT 2>/dev/null | grep -E -e "distzero-$1(\"| |$)" | sed 's/^-A /-D /' |
        while IFS= read -r rule; do
            eval "iptables -w $rule" 2>/dev/null
        done
    return 0
}

stop_agent() { # dir run k: thaw, wait up to 2 s for it to leave, then SIGKILL
    p=$(agent_pid "$1" "$2" "$3") || return 0
    kill -CONT "$p" 2>/dev/null
    wait_gone "$p" 20 && return 0
    kill -KILL "$p" 2>/dev/null
    wait_gone "$p" 50
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
start)
    # start DIR RUN K BIN PORT LOGLEVEL CONTROLLER -- COMMAND...; on stdin
    # the cookie, then DISTZERO_*=value lines for the agent's environment.
    # BIN is the agent's program (there means installed); COMMAND starts it
    # (the program itself or its loader first).
    [ $# -ge 8 ] || fail 2 "usage: start DIR RUN K BIN PORT LOGLEVEL CONTROLLER -- COMMAND"
    dir=$1 run=$2 k=$3 bin=$4 port=$5 level=$6 ctl=$7
    shift 7
    [ "$1" = "--" ] || fail 2 "start: expected -- before the agent's arguments"
    shift
    safe "$run"; safe "$k"
    IFS= read -r cookie || true
    [ -n "$cookie" ] || fail 2 "no cookie on stdin"
    while IFS= read -r kv; do
        case "$kv" in
        DISTZERO_[A-Z_]*=*) export "$kv";;
        '') ;;
        *) fail 2 "bad environment line on stdin";;
        esac
    done
    [ -x "$bin" ] || fail 98 "no agent binary at $bin"
    mdir="$dir/$run/m$k"
    mkdir -p "$mdir/data" || fail 2 "cannot create $mdir"
    [ -f "$dir/$run/controller" ] || printf '%s\n' "$ctl" > "$dir/$run/controller"
    if p=$(agent_pid "$dir" "$run" "$k"); then
        fail 3 "the agent of m$k of run $run is already running (pid $p)"
    fi
    listening "$port" && fail 75 "port $port is taken"
    cd "$mdir" || fail 2 "cannot enter $mdir"
    echo "--- start $(date -u +%Y-%m-%dT%H:%M:%SZ) port $port" >> "m$k.stderr"
    # The cookie on the agent's stdin: not in its arguments or environment.
    printf '%s\n' "$cookie" | DISTZERO_LOG_LEVEL=$level setsid "$@" \
        >> "m$k.stderr" 2>&1 &
    pid=$!
    echo "$pid" > agent.pid
    n=0
    while [ "$n" -lt 200 ]; do
        if ! alive "$pid"; then
            if tail -n 3 "m$k.stderr" | grep -qi "address already in use"; then
                fail 75 "port $port is taken"
            fi
            echo "the agent exited at start; last lines of $mdir/m$k.stderr:"
            tail -n 15 "m$k.stderr"
            if [ -f "m$k.log" ]; then
                echo "last lines of $mdir/m$k.log:"
                tail -n 5 "m$k.log"
            fi
            exit 4
        fi
        if listening "$port"; then
            echo "started $pid"
            exit 0
        fi
        sleep 0.05
        n=$((n + 1))
    done
    kill -KILL "$pid" 2>/dev/null
    echo "the agent (pid $pid) did not listen on port $port within 10 s; last lines of $mdir/m$k.stderr:"
    tail -n 15 "m$k.stderr"
    exit 5
    ;;
kill)
    # kill DIR RUN K: SIGKILL, no clean-up
    [ $# -eq 3 ] || fail 2 "usage: kill DIR RUN K"
    safe "$2"; safe "$3"
    if p=$(agent_pid "$1" "$2" "$3"); then
        kill -KILL "$p" 2>/dev/null
        wait_gone "$p" 50 || fail 6 "pid $p survived SIGKILL for 5 s"
        echo "killed $p"
    else
        echo "not running"
    fi
    ;;
stop|cont)
    # stop|cont DIR RUN K: SIGSTOP (returns once stopped) / SIGCONT
    [ $# -eq 3 ] || fail 2 "usage: $cmd DIR RUN K"
    safe "$2"; safe "$3"
    p=$(agent_pid "$1" "$2" "$3") || fail 7 "the agent of m$3 of run $2 is not running"
    if [ "$cmd" = stop ]; then
        kill -STOP "$p" || fail 6 "kill -STOP $p failed"
        n=0
        while [ "$(pstate "$p")" != T ]; do
            [ "$n" -ge 50 ] && fail 6 "pid $p did not stop within 5 s"
            sleep 0.05; n=$((n + 1))
        done
    else
        kill -CONT "$p" || fail 6 "kill -CONT $p failed"
    fi
    echo "$cmd $p"
    ;;
cut|heal)
    # cut|heal RUN FROM_IP TO_PORT: drop (or stop dropping) TCP packets that
    # arrive from FROM_IP for TO_PORT, tagged distzero-RUN.
    [ $# -eq 3 ] || fail 2 "usage: $cmd RUN FROM_IP TO_PORT"
    safe "$1"
    have_iptables || fail 20 "iptables is not installed"
    spec="INPUT -p tcp -s $2/32 --dport $3 -m comment --comment distzero-$1 -j DROP"
    if [ "$cmd" = cut ]; then
        # shellcheck disable=SC2086
        out=$(iptables -w -I $spec 2>&1) || fail 20 "iptables: $out"
    else
        # shellcheck disable=SC2086
        while iptables -w -D $spec 2>/dev/null; do :; done
    fi
    echo "$cmd ok"
    ;;
dropped)
    # dropped RUN: packets dropped so far by the rules of RUN
    [ $# -eq 1 ] || fail 2 "usage: dropped RUN"
    safe "$1"
    have_iptables || fail 20 "iptables is not installed"
    iptables -w -L INPUT -v -x -n 2>/dev/null |
        awk -v c="distzero-$1" 'index($0, c) { s += $1 } END { print s + 0 }'
    ;;
agents)
    # agents DIR RUN: "mK PID" per live agent of RUN (by pid files)
    [ $# -eq 2 ] || fail 2 "usage: agents DIR RUN"
    safe "$2"
    for pf in "$1/$2"/m*/agent.pid; do
        [ -f "$pf" ] || continue
        m=$(basename "$(dirname "$pf")")
        p=$(cat "$pf" 2>/dev/null)
        is_agent "$p" "$2" && echo "$m $p"
    done
    ;;
logs)
    # logs DIR RUN K: the log files of machine K, one path a line
    [ $# -eq 3 ] || fail 2 "usage: logs DIR RUN K"
    safe "$2"; safe "$3"
    for f in "$1/$2/m$3"/m"$3".* ; do
        [ -f "$f" ] || continue
        case "$(basename "$f")" in
            *.jsonl|*.log|*.stderr) echo "$f";;
        esac
    done
    ;;
finish)
    # finish DIR RUN K...: stop the agents of RUN on this host, remove their
    # folders and the run's packet filters.
    [ $# -ge 2 ] || fail 2 "usage: finish DIR RUN K..."
    dir=$1 run=$2
    shift 2
    safe "$run"
    for k in "$@"; do
        safe "$k"
        stop_agent "$dir" "$run" "$k" || echo "m$k did not die"
        rm -rf "${dir:?}/$run/m$k"
    done
    clear_rules "$run"
    if ! ls -d "$dir/$run"/m* >/dev/null 2>&1; then
        rm -rf "${dir:?}/$run"
    fi
    echo "finished"
    ;;
runs)
    # runs DIR: "RUN CONTROLLER-RECORD" per run folder
    [ $# -eq 1 ] || fail 2 "usage: runs DIR"
    for f in "$1"/*/controller; do
        [ -f "$f" ] || continue
        echo "$(basename "$(dirname "$f")") $(head -n 1 "$f")"
    done
    ;;
sweep)
    # sweep DIR RUN...: kill every agent of these (dead) runs, remove their
    # packet filters and folders.
    [ $# -ge 2 ] || fail 2 "usage: sweep DIR RUN..."
    dir=$1
    shift
    for run in "$@"; do
        safe "$run"
        for pf in "$dir/$run"/m*/agent.pid; do
            [ -f "$pf" ] || continue
            p=$(cat "$pf" 2>/dev/null)
            if is_agent "$p" "$run"; then
                kill -CONT "$p" 2>/dev/null
                kill -KILL "$p" 2>/dev/null
                wait_gone "$p" 50
                echo "killed $p of run $run"
            fi
        done
        clear_rules "$run"
        rm -rf "${dir:?}/$run"
    done
    ;;
*)
    fail 2 "unknown command '$cmd'"
    ;;
esac
exit 0
