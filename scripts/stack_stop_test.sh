#!/usr/bin/env bash
# `make test`: `make dev` and `make demo` stopped the way a CI timeout or a supervisor stops them,
# by SIGTERM to the whole process group (GNU make then forwards a second TERM to the script),
# leave nothing behind. Each case starts the target in its own process group on ports of its own
# (not a running `make dev`'s), waits until it is up (dev: ready; demo: scoring), signals the
# group, and checks that the target exited, that its cleanup ran to its end, that no process it
# started (moto, cargo lambda watch, the api, the stream poller) survives and that its ports are
# free. A survivor is reported, then killed, so the test itself never leaks.
#
# Environment: STOP_TEST_MOTO_PORT (5311), STOP_TEST_API_PORT (9311), STOP_TEST_READY_TIMEOUT (1200:
# passed to the stack as READY_TIMEOUT, scripts/lib.sh's bound for the api's first answer, which
# includes a first build), STOP_TEST_READY_SECONDS (READY_TIMEOUT + 300: the bound for a case's stack
# to come up as a whole; never below READY_TIMEOUT, or a slow first build would read as a failure).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

MOTO_PORT="${STOP_TEST_MOTO_PORT:-5311}"
API_PORT="${STOP_TEST_API_PORT:-9311}"
READY_TIMEOUT="${STOP_TEST_READY_TIMEOUT:-1200}"
READY_SECONDS="${STOP_TEST_READY_SECONDS:-$((READY_TIMEOUT + 300))}"
if ((READY_SECONDS < READY_TIMEOUT)); then
    echo "error: STOP_TEST_READY_SECONDS ($READY_SECONDS) is below READY_TIMEOUT ($READY_TIMEOUT)" >&2
    exit 2
fi
# A small history: the stack comes up in seconds once built (the cases test stopping, not scoring).
export SIM_CUSTOMERS=200 SIM_TERMINALS=1000 SIM_DAYS=40 DEMO_COUNT=2000
export MOTO_PORT API_PORT READY_TIMEOUT
# This run's cases' directories. Each case's VERDICT_LOCAL_DIR is one of them, and every process of
# the stack inherits it: that tag finds what a case started even after its parent died and it was
# re-parented (a snapshot of the tree would miss what starts after it).
RUN_DIR="$ROOT/.local/stop-test/run-$$"

failures=0
fail() {
    printf 'FAIL %s\n' "$*" >&2
    failures=$((failures + 1))
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Every descendant of pid $1.
descendants() {
    local child
    for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
        echo "$child"
        descendants "$child"
    done
}

# Every process whose environment holds VERDICT_LOCAL_DIR=$1 (this script's own never does).
tagged() {
    local env pid
    for env in /proc/[0-9]*/environ; do
        pid="${env#/proc/}"
        pid="${pid%/environ}"
        [[ "$pid" == "$$" ]] && continue
        # Processes come and go, and some are not readable: those errors are no finding.
        if { tr '\0' '\n' <"$env"; } 2>/dev/null | grep -qxF "VERDICT_LOCAL_DIR=$1"; then
            echo "$pid"
        fi
    done
}

# `ps` of the given pids (nothing for none: `ps -p ""` is an error).
show() {
    (($# > 0)) || return 0
    ps -o pid=,pgid=,args= -p "$(IFS=,; echo "$*")" 2>/dev/null || true
}

# The case running now, for the trap: make's pid (its process group) and its directory.
CUR_MAKE=""
CUR_DIR=""

# stop_case GRACE: TERM to make's group, up to GRACE seconds for it to exit, then KILL to the group
# and to everything of the case still alive (its tree and its tag).
stop_case() {
    local grace="$1" deadline
    [[ -n "$CUR_MAKE" ]] || return 0
    local -a tree
    mapfile -t tree < <(descendants "$CUR_MAKE")
    kill -TERM -- "-$CUR_MAKE" 2>/dev/null || true
    deadline=$((SECONDS + grace))
    while kill -0 "$CUR_MAKE" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.2
    done
    kill -KILL -- "-$CUR_MAKE" 2>/dev/null || true
    local -a rest=("${tree[@]}")
    [[ -n "$CUR_DIR" ]] && mapfile -t -O "${#rest[@]}" rest < <(tagged "$CUR_DIR")
    ((${#rest[@]} == 0)) || kill -KILL "${rest[@]}" 2>/dev/null || true
    CUR_MAKE=""
}

# However this script ends (an error, Ctrl-C, its own TERM from a CI timeout), the case running
# is stopped: the test must not leak the stack it tests.
trap 'stop_case 30' EXIT
trap 'stop_case 30; exit 130' INT
trap 'stop_case 30; exit 143' TERM

# case NAME TARGET READY_PATTERN SIGNALS: runs `make TARGET`, waits for READY_PATTERN in its
# output, sends SIGNALS TERMs to its process group 0.2 s apart, then checks what is left.
run_case() {
    local name="$1" target="$2" ready="$3" signals="$4" failures_before=$failures
    local dir="$RUN_DIR/$name" started=$SECONDS
    rm -rf "$dir"
    mkdir -p "$dir"
    for p in "$MOTO_PORT" "$API_PORT"; do
        if port_open "$p"; then
            fail "$name: port $p is already in use before the case starts"
            return
        fi
    done
    # setsid: make leads a new process group (its pid is the group id), as under a supervisor.
    VERDICT_LOCAL_DIR="$dir" setsid make --no-print-directory "$target" </dev/null >"$dir/make.log" 2>&1 &
    local make_pid=$!
    CUR_MAKE=$make_pid CUR_DIR=$dir
    until grep -qs -- "$ready" "$dir/make.log"; do
        if ! kill -0 "$make_pid" 2>/dev/null; then
            tail -n 30 "$dir/make.log" >&2
            stop_case 5
            fail "$name: make $target exited before it was up (log: $dir/make.log)"
            return
        fi
        if ((SECONDS - started > READY_SECONDS)); then
            stop_case 30
            fail "$name: make $target was not up within ${READY_SECONDS}s (log: $dir/make.log)"
            return
        fi
        sleep 0.5
    done
    # Mid-run, not at a step boundary (demo: a second into scoring).
    sleep 1
    # What it started, found before the signal: the stack runs in sessions of its own (setsid),
    # so only the tree from make down finds all of it.
    local -a tree
    mapfile -t tree < <(descendants "$make_pid")
    local names=""
    ((${#tree[@]} == 0)) || names="$(ps -o comm= -p "$(IFS=,; echo "${tree[*]}")" 2>/dev/null | sort | uniq -c | tr -s ' \n' ' ')"
    echo "    $name: up after $((SECONDS - started))s; $((${#tree[@]})) processes under make ($names)" >&2
    if ! port_open "$MOTO_PORT" || ! port_open "$API_PORT"; then
        fail "$name: moto ($MOTO_PORT) or the api ($API_PORT) was not listening when up"
    fi

    local i
    for ((i = 0; i < signals; i++)); do
        kill -TERM -- "-$make_pid" 2>/dev/null || true
        sleep 0.2
    done
    local status=0 deadline=$((SECONDS + 60))
    while kill -0 "$make_pid" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.2
    done
    if kill -0 "$make_pid" 2>/dev/null; then
        fail "$name: make $target still runs 60s after the signal"
        kill -KILL -- "-$make_pid" 2>/dev/null || true
    fi
    wait "$make_pid" || status=$?
    # Terminated by the signal, not a success (GNU make re-raises it: 143 = 128 + SIGTERM).
    [[ "$status" == 143 ]] || fail "$name: make $target exited $status after SIGTERM, not 143"
    # The cleanup ran to its end: its last step says so.
    grep -q "stopped moto" "$dir/make.log" ||
        fail "$name: the cleanup did not finish (no \"stopped moto\" in $dir/make.log)"

    # make has exited: nothing of the case may be left, neither of the tree seen at ready nor
    # anything carrying its tag (started later, or re-parented). What was killed gets a moment to
    # be reaped.
    local -a left=()
    local -A seen
    deadline=$((SECONDS + 10))
    while true; do
        left=()
        seen=()
        for p in "${tree[@]}" $(tagged "$dir"); do
            [[ -n "${seen[$p]:-}" ]] && continue
            seen[$p]=1
            kill -0 "$p" 2>/dev/null && left+=("$p")
        done
        ((${#left[@]} == 0 || SECONDS >= deadline)) && break
        sleep 0.2
    done
    CUR_MAKE=""
    if ((${#left[@]} > 0)); then
        fail "$name: ${#left[@]} process(es) survived:"
        show "${left[@]}" >&2
        kill -KILL "${left[@]}" 2>/dev/null || true
    fi
    for p in "$MOTO_PORT" "$API_PORT"; do
        port_open "$p" && fail "$name: port $p is still open after the stop"
    done
    echo "    $name: stopped and checked in $((SECONDS - started))s" >&2
    # A passed case's logs are not needed; a failed one's stay under $RUN_DIR.
    ((failures == failures_before)) && rm -rf "$dir"
    return 0
}

# Arguments: the cases to run (default: all).
cases=("$@")
((${#cases[@]} > 0)) || cases=(dev-term-once dev-term-twice demo-mid-run-term-twice)
for c in "${cases[@]}"; do
    case "$c" in
    dev-term-once) run_case "$c" dev "Press Ctrl-C to stop everything" 1 ;;
    dev-term-twice) run_case "$c" dev "Press Ctrl-C to stop everything" 2 ;;
    demo-mid-run-term-twice) run_case "$c" demo "scoring the last" 2 ;;
    *) fail "unknown case $c" ;;
    esac
done

rmdir "$RUN_DIR" 2>/dev/null || true
if ((failures > 0)); then
    echo "stack stop test: $failures failure(s) in ${#cases[@]} case(s)" >&2
    exit 1
fi
echo "stack stop test: ${#cases[@]} case(s) passed (${cases[*]})" >&2
