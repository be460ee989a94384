#!/usr/bin/env bash
# `make test`: `make dev` and `make demo` stopped the way a CI timeout or a supervisor stops them,
# by SIGTERM to the whole process group (GNU make then forwards a second TERM to the script),
# leave nothing behind. Each case starts the target in its own process group on ports of its own
# (not a running `make dev`'s), waits until it is up (dev: ready; demo: scoring), signals the
# group, and checks that the target exited, that its cleanup ran to its end, that no process it
# started (moto, cargo lambda watch, the api, the stream poller) survives and that its ports are
# free. A survivor is reported, then killed, so the test itself never leaks.
#
# Environment: STOP_TEST_MOTO_PORT (5311), STOP_TEST_API_PORT (9311), STOP_TEST_READY_SECONDS (900:
# the bound for a case's stack to come up, which includes a first build).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

MOTO_PORT="${STOP_TEST_MOTO_PORT:-5311}"
API_PORT="${STOP_TEST_API_PORT:-9311}"
READY_SECONDS="${STOP_TEST_READY_SECONDS:-900}"
# A small history: the stack comes up in seconds once built (the cases test stopping, not scoring).
export SIM_CUSTOMERS=200 SIM_TERMINALS=1000 SIM_DAYS=40 DEMO_COUNT=2000
export MOTO_PORT API_PORT

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

# case NAME TARGET READY_PATTERN SIGNALS: runs `make TARGET`, waits for READY_PATTERN in its
# output, sends SIGNALS TERMs to its process group 0.2 s apart, then checks what is left.
run_case() {
    local name="$1" target="$2" ready="$3" signals="$4"
    local dir="$ROOT/.local/stop-test-$name" started=$SECONDS
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
    until grep -qs -- "$ready" "$dir/make.log"; do
        if ! kill -0 "$make_pid" 2>/dev/null; then
            tail -n 30 "$dir/make.log" >&2
            fail "$name: make $target exited before it was up (log: $dir/make.log)"
            return
        fi
        if ((SECONDS - started > READY_SECONDS)); then
            kill -KILL -- "-$make_pid" 2>/dev/null || true
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
    local names
    names="$(ps -o comm= -p "$(IFS=,; echo "${tree[*]}")" 2>/dev/null | sort | uniq -c | tr -s ' \n' ' ')"
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

    # Give what was killed a moment to be reaped, then nothing of the tree may be left.
    local -a left=()
    deadline=$((SECONDS + 10))
    while true; do
        left=()
        for p in "${tree[@]}"; do
            kill -0 "$p" 2>/dev/null && left+=("$p")
        done
        ((${#left[@]} == 0 || SECONDS >= deadline)) && break
        sleep 0.2
    done
    if ((${#left[@]} > 0)); then
        fail "$name: ${#left[@]} process(es) survived:"
        ps -o pid=,pgid=,args= -p "$(IFS=,; echo "${left[*]}")" >&2 || true
        kill -KILL "${left[@]}" 2>/dev/null || true
    fi
    for p in "$MOTO_PORT" "$API_PORT"; do
        port_open "$p" && fail "$name: port $p is still open after the stop"
    done
    echo "    $name: stopped and checked in $((SECONDS - started))s" >&2
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

if ((failures > 0)); then
    echo "stack stop test: $failures failure(s) in ${#cases[@]} case(s)" >&2
    exit 1
fi
echo "stack stop test: ${#cases[@]} case(s) passed (${cases[*]})" >&2
