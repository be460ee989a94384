#!/usr/bin/env bash
# `make events`: with `make dev` running, what arrived on the local EventBridge bus. The bus's tap
# (an SQS queue a rule fills with every verdict.* event, made by `verdict bootstrap --events-tap`)
# is drained into .local/events.ndjson, which keeps every event seen so far; the last
# EVENTS_LAST (30) are printed, with the count of each kind.
#
# Environment: as scripts/dev.sh (MOTO_PORT, EVENTS_TAP_QUEUE), plus EVENTS_LAST.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"

[[ -x "$VENV/bin/python" ]] || die "$VENV is missing: run \`make venv\` (or \`make dev\`, which does)"
port_open "$MOTO_PORT" ||
    die "the local stack is not running: nothing listens on 127.0.0.1:$MOTO_PORT (moto, MOTO_PORT). Start it with \`make dev\` in another terminal"
use_local_aws
mkdir -p "$LOCAL"
"$VENV/bin/python" - "$EVENTS_TAP_QUEUE" "$LOCAL/events.ndjson" "${EVENTS_LAST:-30}" <<'PY'
import json, os, sys
from collections import Counter

import boto3
from botocore.exceptions import BotoCoreError, ClientError

queue, path, last = sys.argv[1], sys.argv[2], int(sys.argv[3])
sqs = boto3.client("sqs", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name=os.environ["AWS_REGION"])
try:
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
except (BotoCoreError, ClientError) as e:
    sys.exit(f"error: no events tap queue {queue!r} on moto ({e}); `make dev` creates it when functions/events is in the checkout")

new = 0
with open(path, "a") as out:
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not got:
            break
        for m in got:
            out.write(m["Body"].strip() + "\n")
        # Deleted once written: each event lands in the file once.
        sqs.delete_message_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)])
        new += len(got)

events = []
with open(path) as f:
    for line in f:
        try:
            events.append(json.loads(line))
        except ValueError:
            continue

def what(d):
    keys = ("transaction_id", "decision", "score", "label", "outcome", "version", "ruleset_version")
    return " ".join(f"{k}={d[k]}" for k in keys if k in d and not isinstance(d[k], (dict, list)))

print(f"{len(events)} events on the bus so far ({new} new; kept in {os.path.relpath(path)})")
for kind, n in sorted(Counter(e.get("detail-type", "?") for e in events).items()):
    print(f"  {kind}: {n}")
for e in events[-last:]:
    d = e.get("detail") or {}
    print(f"{e.get('time', '?'):20}  {e.get('source', '?'):18} {e.get('detail-type', '?'):22} "
          f"{d.get('event_id', '?')}  tenant={d.get('tenant', '?')} {what(d)}")
PY
