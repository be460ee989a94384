#!/usr/bin/env bash
# `make dev`: the whole stack on this machine, no Docker. Builds, starts moto (DynamoDB and S3) on
# 127.0.0.1, creates the table and buckets, simulates a history, trains and activates a model,
# loads the history (all but its last DEMO_COUNT transactions) into the aggregates, creates an API
# key, runs `cargo lambda watch` with every function and a stream poller feeding functions/events,
# and prints curl commands to try. Ctrl-C stops everything it started.
#
# Environment: MOTO_PORT (5010), API_PORT (9000), VERDICT_TENANT (demo), TABLE_NAME, MODEL_BUCKET,
# DATA_BUCKET, EVENT_BUS_NAME, EVENTS_TAP_QUEUE, DEMO_COUNT (transactions left out of the history,
# 1000), READY_TIMEOUT (seconds for the first build, 1200), SIM_CUSTOMERS/SIM_TERMINALS/SIM_DAYS,
# WATCH_CONCURRENCY (instances of each function watch may run at once, 1; e.g. 16 for `verdict load
# --concurrency 16`).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"

# shellcheck disable=SC2119 # no arguments for watch here: it hot-reloads
setup_stack

# A realistic body: the simulation's last transaction, under a fresh id so it is scored, not
# replayed. Its customer is a real one, so the history query has something to show after it.
body="$("$VENV/bin/python" - "$SIM_FILE" <<'PY'
import json, sys, time
with open(sys.argv[1], "rb") as f:
    f.seek(0, 2)
    f.seek(max(0, f.tell() - 4096))
    last = f.read().splitlines()[-1]
tx = json.loads(last)
tx.pop("label", None)
tx["id"] = "tx_dev_%d" % time.time()
print(json.dumps(tx, separators=(",", ":")))
PY
)"
id="$("$VENV/bin/python" -c 'import json,sys; print(json.loads(sys.argv[1])["id"])' "$body")"
customer="$("$VENV/bin/python" -c 'import json,sys; print(json.loads(sys.argv[1])["customer_id"])' "$body")"
key="$(cat "$KEY_FILE")"

# The one place the key is shown. It is also in .local/api-key (git-ignored, mode 600).
cat <<MSG

Verdict is running: api at $API_URL, moto at $MOTO_URL, tenant "$TENANT".
Logs: .local/watch.log (the function, rebuilt on every change), .local/moto.log, .local/poller.log.
The aggregates hold the simulated history up to its last $DEMO_COUNT transactions, with the fraud
labels known by then. Score those and see the mix against the simulator's labels:
  $VERDICT load --url $API_URL --key-file $KEY_FILE --data $SIM_FILE --count $DEMO_COUNT
What was published on the bus (decisions, labels, activations): MOTO_PORT=$MOTO_PORT make events

# Score a transaction
curl -sS -X POST '$API_URL/v1/transactions' \\
  -H 'Authorization: Bearer $key' -H 'Content-Type: application/json' \\
  -d '$body'; echo

# Read the stored decision back (the audit trail)
curl -sS '$API_URL/v1/transactions/$id' -H 'Authorization: Bearer $key'; echo

# The customer's history, newest first
curl -sS '$API_URL/v1/transactions?customer=$customer&limit=10' -H 'Authorization: Bearer $key'; echo

# Rules (seeded: lists blocked_emails, blocked_cards and trusted_customers, ruleset 1 active; README "Rules and lists")
curl -sS -X POST '$API_URL/v1/transactions' \\
  -H 'Authorization: Bearer $key' -H 'Content-Type: application/json' \\
  -d '{"id":"tx_rule_$id","occurred_at":"2018-08-08T10:00:00Z","amount":1500,"currency":"EUR","customer_id":"c-00042","terminal_id":"t-00917","email":"fraudster@example.com"}'; echo
curl -sS '$API_URL/v1/rulesets/active' -H 'Authorization: Bearer $key'; echo
curl -sS '$API_URL/v1/audit' -H 'Authorization: Bearer $key'; echo

# The review queue (review decisions open items; README "Labels and reviews")
curl -sS '$API_URL/v1/reviews?status=open&sort=risk&limit=5' -H 'Authorization: Bearer $key'; echo

# Which model is serving
curl -sS '$API_URL/v1/models/active' -H 'Authorization: Bearer $key'; echo

# Health (no key needed)
curl -sS '$API_URL/v1/health'; echo

Press Ctrl-C to stop everything.
MSG

# Until Ctrl-C (the trap stops the stack) or until watch exits by itself.
status=0
wait "$WATCH_PID" || status=$?
tail -n 20 "$LOCAL/watch.log" >&2
die "cargo lambda watch exited (status $status); log: $LOCAL/watch.log"
