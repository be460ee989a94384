# shellcheck shell=bash
# Shared by scripts/dev.sh and scripts/demo.sh: the local stack (moto + cargo lambda watch), set up
# the way `make dev` documents. Source it; do not run it.
#
# Everything binds to and targets 127.0.0.1. Ports and names can be overridden from the
# environment. Background services run in their own process groups (setsid) so that stop_stack can
# end each one with everything it started, and nothing else.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
# Git-ignored (so neither committed nor watched by `cargo lambda watch`, which honours .gitignore).
# The simulation and its model are cached here; the run's state (logs, the key, events) goes to
# VERDICT_LOCAL_DIR, by default the same, so a second stack (the tests' scripts/stack_stop_test.sh
# and scripts/schemathesis.sh, on other ports) never writes over a running `make dev`'s files.
CACHE="$ROOT/.local"
LOCAL="${VERDICT_LOCAL_DIR:-$CACHE}"

MOTO_PORT="${MOTO_PORT:-5010}"
API_PORT="${API_PORT:-9000}"
TENANT="${VERDICT_TENANT:-demo}"
TABLE_NAME="${TABLE_NAME:-verdict-local}"
# The api seals page cursors with this secret and refuses to start without one; a fresh one per
# run (cursors of an earlier run then are a 400, as after a key rotation on AWS).
VERDICT_CURSOR_KEY="${VERDICT_CURSOR_KEY:-$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')}"
MODEL_BUCKET="${MODEL_BUCKET:-verdict-models-local}"
DATA_BUCKET="${DATA_BUCKET:-verdict-data-local}"
# The bus functions/events publishes to, and the SQS queue a rule copies every event into, so
# `make events` can list what arrived (created by `verdict bootstrap --events-tap`).
EVENT_BUS_NAME="${EVENT_BUS_NAME:-verdict-events}"
EVENTS_TAP_QUEUE="${EVENTS_TAP_QUEUE:-verdict-events-tap}"
# build() compiles the CLI and the api before watch starts, into the artifacts watch reuses (one
# build: workspace-hack/Cargo.toml), so watch's first request compiles nothing; the bound is for a
# watch that has to compile after all (an edited source).
READY_TIMEOUT="${READY_TIMEOUT:-1200}"

# A small simulated history: about 4,000 transactions a day (240,000 in all, ~1% fraud), enough
# for the model to learn the handbook's fraud patterns; simulating and training take seconds.
SIM_CUSTOMERS="${SIM_CUSTOMERS:-2000}"
SIM_TERMINALS="${SIM_TERMINALS:-10000}"
SIM_DAYS="${SIM_DAYS:-60}"
SIM_START="2018-04-01"
TRAIN_START="2018-05-01" # 30 days in, so the 30-day windows are full; test traffic is the last days
SIM_FILE="$CACHE/sim-${SIM_CUSTOMERS}c-${SIM_TERMINALS}t-${SIM_DAYS}d.ndjson"
MODEL_FILE="$CACHE/model-${SIM_CUSTOMERS}c-${SIM_TERMINALS}t-${SIM_DAYS}d.vmodel"
KEY_FILE="$LOCAL/api-key"
# The simulation's last DEMO_COUNT transactions are what `make demo` scores (`verdict load
# --count`); everything before them is loaded into the aggregates first (load_history).
DEMO_COUNT="${DEMO_COUNT:-1000}"

MOTO_URL="http://127.0.0.1:$MOTO_PORT"
API_URL="http://127.0.0.1:$API_PORT/lambda-url/api"
# Set by build(): cargo's target directory may be moved (CARGO_TARGET_DIR, build.target-dir).
VERDICT=""

MOTO_PID=""
WATCH_PID=""
POLLER_PID=""

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# The local stack's AWS settings, for the CLI and (through --env-var) the function. The dummy
# credentials are moto's convention; a profile or config file of the user's is kept out of it.
use_local_aws() {
    export AWS_ENDPOINT_URL="$MOTO_URL"
    export AWS_REGION=us-east-1
    export AWS_ACCESS_KEY_ID=testing
    export AWS_SECRET_ACCESS_KEY=testing
    export AWS_CONFIG_FILE=/nonexistent/verdict-local-aws-config
    export AWS_SHARED_CREDENTIALS_FILE=/nonexistent/verdict-local-aws-credentials
    export AWS_EC2_METADATA_DISABLED=true
    unset AWS_PROFILE AWS_SESSION_TOKEN AWS_DEFAULT_REGION
    export TABLE_NAME MODEL_BUCKET DATA_BUCKET EVENT_BUS_NAME
}

check_tools() {
    [[ -x "$VENV/bin/moto_server" && -x "$VENV/bin/cargo-lambda" ]] ||
        die "$VENV is missing moto_server or cargo-lambda: run \`make venv\` (or \`make dev\`, which does)"
    command -v cargo >/dev/null || die "cargo is not on PATH: install Rust (rustup) first"
    command -v setsid >/dev/null || die "setsid (util-linux) is needed to run the stack's processes"
    # The pinned tools first: `cargo lambda` and what it runs (ziglang for cross builds) resolve to
    # .venv. Watch itself is started by its path below, since cargo looks for subcommands in
    # ~/.cargo/bin before PATH and another cargo-lambda may be installed there.
    export PATH="$VENV/bin:$PATH"
}

# True if something accepts TCP connections on 127.0.0.1:$1.
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# True if GET $1 answers 2xx. Never through a proxy from the environment: the target is local.
http_ok() {
    if command -v curl >/dev/null; then
        curl -fsS -o /dev/null --noproxy '*' --max-time 5 "$1" 2>/dev/null
    else
        "$VENV/bin/python" - "$1" <<'PY' 2>/dev/null
import sys, urllib.request
urllib.request.build_opener(urllib.request.ProxyHandler({})).open(sys.argv[1], timeout=5)
PY
    fi
}

require_free_port() {
    if port_open "$1"; then
        die "port $1 on 127.0.0.1 is in use (another \`make dev\`?); set $2 to another port"
    fi
}

# Starts "$@" in a new session, so in its own process group, with output to log file $2, and
# stores its pid (also its process group id) in the variable named $1. A direct child of this
# shell, not started in a $(subshell), so that this shell can wait for it.
start_group() {
    local var="$1" log="$2"
    shift 2
    setsid "$@" </dev/null >"$log" 2>&1 &
    printf -v "$var" '%s' "$!"
}

# Every descendant of pid $1 (children first found, then theirs).
descendants() {
    local child
    for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
        echo "$child"
        descendants "$child"
    done
}

# True while any of the pids given is alive.
alive_any() {
    local p
    for p in "$@"; do
        kill -0 "$p" 2>/dev/null && return 0
    done
    return 1
}

# Ends process group $1 and any descendant that left it: TERM, a grace period, then KILL.
stop_group() {
    local pid="$1" name="$2" _
    [[ -n "$pid" ]] || return 0
    # Collected before signalling: a child that made its own process group (cargo-lambda starts
    # the function that way) is still found.
    local -a pids
    mapfile -t pids < <(echo "$pid"; descendants "$pid")
    kill -TERM -- "-$pid" 2>/dev/null || true
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for _ in $(seq 1 50); do
        alive_any "${pids[@]}" || break
        sleep 0.1
    done
    # What is left, plus anything a still-running leader started meanwhile.
    mapfile -t -O "${#pids[@]}" pids < <(descendants "$pid")
    kill -KILL -- "-$pid" 2>/dev/null || true
    kill -KILL "${pids[@]}" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    say "stopped $name"
}

stop_stack() {
    # Once only, whether reached by a signal or by the normal exit, and never cut short: a
    # supervisor or CI timeout signals the whole process group, and GNU make forwards the TERM it
    # gets to this script again, so a second INT or TERM arrives while stopping. Ignored from here
    # on (the caller's trap exits with the first signal's status afterwards).
    trap '' INT TERM
    trap - EXIT
    stop_group "$POLLER_PID" "the stream poller"
    POLLER_PID=""
    stop_group "$WATCH_PID" "cargo lambda watch"
    WATCH_PID=""
    stop_group "$MOTO_PID" "moto"
    MOTO_PID=""
}

# Installs the traps that take the stack down however the script ends.
on_exit_stop_stack() {
    trap 'stop_stack' EXIT
    trap 'echo >&2; stop_stack; exit 130' INT
    trap 'stop_stack; exit 143' TERM
}

# The same artifacts as `cargo test --workspace` and as watch's `cargo run --bin api`: after one of
# them, the others compile no dependency (`make one-build` checks this).
build() {
    say "building the verdict CLI and the api function (first time: several minutes)"
    (cd "$ROOT" && cargo build --locked -p verdict-cli -p api)
    local target
    target="$(cd "$ROOT" && cargo metadata --locked --no-deps --format-version 1 |
        "$VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')" ||
        die "cannot read the target directory from \`cargo metadata\`"
    VERDICT="$target/debug/verdict"
    [[ -x "$VERDICT" ]] || die "the build left no $VERDICT"
}

start_moto() {
    require_free_port "$MOTO_PORT" MOTO_PORT
    # A fresh moto holds no events: `make events` must not list an earlier stack's.
    rm -f "$LOCAL/events.ndjson"
    say "starting moto on $MOTO_URL (log: $LOCAL/moto.log)"
    # tests/moto_server.py: moto_server handling one request at a time, which gives
    # TransactWriteItems and conditional writes DynamoDB's atomicity (see the file).
    start_group MOTO_PID "$LOCAL/moto.log" "$VENV/bin/python" "$ROOT/tests/moto_server.py" -H 127.0.0.1 -p "$MOTO_PORT"
    local _
    for _ in $(seq 1 300); do
        port_open "$MOTO_PORT" && return 0
        kill -0 "$MOTO_PID" 2>/dev/null || {
            tail -n 20 "$LOCAL/moto.log" >&2
            die "moto exited while starting"
        }
        sleep 0.1
    done
    die "moto did not listen on port $MOTO_PORT within 30 s (log: $LOCAL/moto.log)"
}

# Simulates a history and trains a model on it, unless both files exist from an earlier run
# with the same sizes (they are deterministic: fixed seed).
make_model() {
    if [[ -s "$SIM_FILE" && -s "$MODEL_FILE" ]]; then
        say "reusing $(basename "$SIM_FILE") and $(basename "$MODEL_FILE") from $CACHE/"
        return 0
    fi
    say "simulating $SIM_DAYS days of $SIM_CUSTOMERS customers"
    # Written under another name first, so an interrupted run never leaves a partial file to reuse.
    local partial
    partial="$CACHE/partial-$(basename "$SIM_FILE")"
    "$VERDICT" simulate --customers "$SIM_CUSTOMERS" --terminals "$SIM_TERMINALS" --days "$SIM_DAYS" \
        --start "$SIM_START" --out "$partial"
    mv "$partial" "$SIM_FILE"
    say "training a model on the 7 days from $TRAIN_START"
    "$VERDICT" train --data "$SIM_FILE" --train-start "$TRAIN_START" --out "$CACHE/partial-$(basename "$MODEL_FILE")"
    mv "$CACHE/partial-$(basename "$MODEL_FILE")" "$MODEL_FILE"
}

bootstrap() {
    say "creating table $TABLE_NAME and buckets $MODEL_BUCKET, $DATA_BUCKET; activating the model for tenant $TENANT"
    "$VERDICT" bootstrap --tenant "$TENANT" --table "$TABLE_NAME" --model-bucket "$MODEL_BUCKET" \
        --data-bucket "$DATA_BUCKET" --model "$MODEL_FILE" \
        --event-bus "$EVENT_BUS_NAME" --events-tap "$EVENTS_TAP_QUEUE"
}

# The history before the transactions to score, into the tenant's aggregates, with the fraud
# labels known by then (7 days' delay), so scoring sees real velocity and terminal risk.
load_history() {
    say "loading the simulated history (all but the last $DEMO_COUNT transactions) into the aggregates"
    "$VERDICT" history load --tenant "$TENANT" --table "$TABLE_NAME" --data "$SIM_FILE" --leave-last "$DEMO_COUNT"
}

# The key goes straight into a file only this user can read; it is never echoed here.
create_key() {
    say "creating an API key for tenant $TENANT (kept in .local/api-key)"
    (
        umask 077
        "$VERDICT" keys create --tenant "$TENANT" \
            --scopes transactions:write,transactions:read,models:read,models:write,rules:read,rules:write,lists:write,labels:write,reviews:read,reviews:write --expires-in 30d >"$KEY_FILE.tmp"
    )
    mv "$KEY_FILE.tmp" "$KEY_FILE"
}

# Starts `cargo lambda watch` for every function of the workspace; extra arguments are passed on.
# The region and dummy credentials come from [workspace.metadata.lambda.watch] in Cargo.toml; what
# varies with this script's settings is passed here (cargo-lambda lets the metadata win over
# --env-var, so nothing below may also be there).
start_watch() {
    require_free_port "$API_PORT" API_PORT
    # The log lives in .local/, which watch ignores (.gitignore): a log inside a watched path
    # would make it rebuild on every line it writes.
    say "starting cargo lambda watch on http://127.0.0.1:$API_PORT (log: $LOCAL/watch.log)"
    start_group WATCH_PID "$LOCAL/watch.log" "$VENV/bin/cargo-lambda" lambda watch \
        --invoke-address 127.0.0.1 --invoke-port "$API_PORT" \
        --env-var "TABLE_NAME=$TABLE_NAME" \
        --env-var "MODEL_BUCKET=$MODEL_BUCKET" \
        --env-var "DATA_BUCKET=$DATA_BUCKET" \
        --env-var "EVENT_BUS_NAME=$EVENT_BUS_NAME" \
        --env-var "VERDICT_CURSOR_KEY=$VERDICT_CURSOR_KEY" \
        --env-var "AWS_ENDPOINT_URL=$MOTO_URL" \
        --env-var "RUST_LOG=${RUST_LOG:-info}" \
        --concurrency "${WATCH_CONCURRENCY:-1}" \
        "$@"
}

# template.yaml's EventsStreamMapping FilterCriteria: only these records reach the function.
STREAM_FILTER='{"eventName": ["INSERT", "MODIFY"], "dynamodb": {"Keys": {"sk": {"S": ["DECISION", "REVIEW", "ACTIVE", "CONFIG"]}}}}'

# The table's stream → functions/events under watch, as Lambda's event source mapping would
# (scripts/stream_poller.py), from the stream's newest record on: the history load before it is
# not replayed. The first invocation builds the function under watch, hence READY_TIMEOUT for
# an answer.
start_poller() {
    say "starting the stream poller: the table's stream → functions/events (log: $LOCAL/poller.log)"
    start_group POLLER_PID "$LOCAL/poller.log" "$VENV/bin/python" "$ROOT/scripts/stream_poller.py" \
        --table "$TABLE_NAME" --endpoint "$MOTO_URL" --filter "$STREAM_FILTER" \
        --timeout "$READY_TIMEOUT" \
        --invoke-url "http://127.0.0.1:$API_PORT/2015-03-31/functions/events/invocations"
}

# Waits until the api answers GET /v1/health; the first request also triggers its build.
wait_ready() {
    local health="$API_URL/v1/health" started=$SECONDS next=30
    say "waiting for $health (the first build can take minutes; READY_TIMEOUT=${READY_TIMEOUT}s)"
    until http_ok "$health"; do
        kill -0 "$WATCH_PID" 2>/dev/null || {
            tail -n 30 "$LOCAL/watch.log" >&2
            die "cargo lambda watch exited (log: $LOCAL/watch.log)"
        }
        if ((SECONDS - started > READY_TIMEOUT)); then
            tail -n 30 "$LOCAL/watch.log" >&2
            die "the api did not answer within ${READY_TIMEOUT}s (log: $LOCAL/watch.log)"
        fi
        if ((SECONDS - started >= next)); then
            printf '    still waiting (%ss): %s\n' "$((SECONDS - started))" "$(tail -n 1 "$LOCAL/watch.log" | cut -c1-120)" >&2
            next=$((next + 30))
        fi
        sleep 1
    done
    say "the api is up ($((SECONDS - started))s)"
}

# Everything up to a running, answering api.
setup_stack() {
    check_tools
    mkdir -p "$CACHE" "$LOCAL"
    use_local_aws
    on_exit_stop_stack
    build
    start_moto
    make_model
    bootstrap
    load_history
    create_key
    start_watch "$@"
    start_poller
    wait_ready
    seed_rules
}

# An example ruleset and lists, through the API (scripts/seed_rules.py).
seed_rules() {
    say "seeding an example ruleset and lists"
    "$VENV/bin/python" "$ROOT/scripts/seed_rules.py" "$API_URL" "$KEY_FILE"
}

# The review tour's lines in the S3 archive functions/events writes beside publishing: its two
# decisions and its label, each exactly once. Argument: the tour's first transaction id.
check_tour_archive() {
    "$VENV/bin/python" - "$DATA_BUCKET" "$TENANT" "$1" <<'PY'
import gzip, json, os, sys, time
from collections import Counter

import boto3

bucket, tenant, tx = sys.argv[1], sys.argv[2], sys.argv[3]
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name=os.environ["AWS_REGION"])
want = {("decisions", tx), ("decisions", tx[:-1] + "2"), ("labels", tx)}


def scan():
    seen = Counter()
    for kind in ("decisions", "labels"):
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"archive/{tenant}/{kind}/")
        for page in pages:
            for o in page.get("Contents", []):
                body = gzip.decompress(s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read())
                for line in body.splitlines():
                    t = json.loads(line).get("transaction_id")
                    if (kind, t) in want:
                        seen[(kind, t)] += 1
    return seen


# The archive is written right after the events are published, in the same invocation.
for _ in range(10):
    seen = scan()
    if all(seen[k] >= 1 for k in want):
        break
    time.sleep(1)
for k in sorted(want):
    print(f"    archive/{tenant}/{k[0]}/…: {k[1]} in {seen[k]} line(s)", file=sys.stderr)
if any(seen[k] != 1 for k in want):
    sys.exit("error: the archive does not hold each of the tour's decisions and its label exactly once")
PY
}

# The review tour's events, as `make events` sees them: the review decision, its label and its
# resolution, and the blocked next payment, each published once (the poller delivers within
# seconds; waits up to TOUR_EVENTS_SECONDS, 90). Argument: the tour's first transaction id.
check_tour_events() {
    local tx="$1" deadline=$((SECONDS + ${TOUR_EVENTS_SECONDS:-90}))
    while true; do
        EVENTS_LAST=0 bash "$ROOT/scripts/events.sh" >/dev/null || return 1
        if "$VENV/bin/python" - "$LOCAL/events.ndjson" "$tx" "$((deadline - SECONDS))" <<'PY'; then
import json, sys
from collections import Counter

path, tx, left = sys.argv[1], sys.argv[2], int(sys.argv[3])
second = tx[:-1] + "2"
want = {("verdict.decisions", tx), ("verdict.labels", tx), ("verdict.reviews", tx), ("verdict.decisions", second)}
seen = Counter()
for line in open(path):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    d = e.get("detail") or {}
    # At-least-once delivery: one event per committed change means one per event_id.
    if (e.get("source"), d.get("transaction_id")) in want:
        seen[(e["source"], d["transaction_id"], d.get("event_id"))] += 1
ids = Counter((s, t) for s, t, _ in seen)
if set(ids) == want or left <= 0:
    for (s, t, _), n in sorted(seen.items()):
        print(f"    {s} {t}: received {n}x", file=sys.stderr)
    missing = want - set(ids)
    if missing:
        sys.exit(f"error: no event for {sorted(missing)} within the wait")
    # Each of these is one committed change: a second event id would be an invented event.
    twice = sorted(k for k, n in ids.items() if n > 1)
    if twice:
        sys.exit(f"error: more than one event id for {twice}")
    sys.exit(0)
sys.exit(2)
PY
            check_tour_archive "$tx"
            return
        else
            local rc=$?
            ((rc == 2)) || return 1
        fi
        sleep 2
    done
}
