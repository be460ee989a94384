"""The local stand-in for Lambda's DynamoDB-stream event source mapping (`make dev`).

Reads the table's stream on moto (DescribeTable → DescribeStream → GetShardIterator →
GetRecords) and invokes a function under `cargo lambda watch` with the event Lambda would send:
`{"Records": [...]}`, each record with eventID, eventName, eventVersion, eventSource
"aws:dynamodb", eventSourceARN, awsRegion and dynamodb{Keys, NewImage, OldImage,
ApproximateCreationDateTime, SequenceNumber, SizeBytes, StreamViewType}.

As the mapping with ReportBatchItemFailures does:
- a response `{"batchItemFailures": [{"itemIdentifier": "<sequence number>"}]}` checkpoints the
  records before the first failed one and retries the batch from it; an identifier that is not in
  the batch, a function error or no answer retries the whole batch;
- with --filter PATTERN (the FilterCriteria pattern of template.yaml's EventsStreamMapping) only
  matching records reach the function, as the mapping's filter does; the rest are passed over;
- after --max-retries retries the records still failing are dropped (logged), as a mapping with
  MaximumRetryAttempts does without an on-failure destination; the shard moves on.

Usage: .venv/bin/python scripts/stream_poller.py --table T --invoke-url URL [--endpoint URL]
       [--start latest|trim_horizon] [--batch-size 100] [--max-retries 3] [--idle-exit S]
The AWS settings come from the environment (scripts/lib.sh's use_local_aws).
"""

import argparse
import base64
import datetime
import json
import os
import sys
import time
import urllib.error
import urllib.request

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError


def log(msg):
    print(f"{datetime.datetime.now(datetime.timezone.utc).strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def attribute_json(value):
    """An AttributeValue as Lambda's event JSON holds it: binaries base64, the rest as given."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k == "B":
                out[k] = base64.b64encode(v).decode()
            elif k == "BS":
                out[k] = [base64.b64encode(b).decode() for b in v]
            elif k == "M":
                out[k] = {name: attribute_json(item) for name, item in v.items()}
            elif k == "L":
                out[k] = [attribute_json(item) for item in v]
            else:
                out[k] = v
        return out
    return value


def image_json(image):
    return {name: attribute_json(v) for name, v in image.items()}


def lambda_record(rec, stream_arn, region):
    """A GetRecords record in the shape of a Lambda event record."""
    ddb = rec["dynamodb"]
    out = {
        "eventID": rec["eventID"],
        "eventName": rec["eventName"],
        "eventVersion": rec.get("eventVersion", "1.1"),
        "eventSource": "aws:dynamodb",
        "awsRegion": rec.get("awsRegion") or region,
        "eventSourceARN": stream_arn,
    }
    d = {
        "Keys": image_json(ddb.get("Keys", {})),
        "SequenceNumber": ddb["SequenceNumber"],
        "SizeBytes": ddb.get("SizeBytes", 0),
        "StreamViewType": ddb.get("StreamViewType", "NEW_AND_OLD_IMAGES"),
    }
    # Whole epoch seconds, as Lambda's samples carry it.
    created = ddb.get("ApproximateCreationDateTime")
    if isinstance(created, datetime.datetime):
        d["ApproximateCreationDateTime"] = int(created.timestamp())
    elif created is not None:
        d["ApproximateCreationDateTime"] = int(float(created))
    else:
        d["ApproximateCreationDateTime"] = int(time.time())
    for image in ("NewImage", "OldImage"):
        if image in ddb:
            d[image] = image_json(ddb[image])
    out["dynamodb"] = d
    return out


def matches(pattern, value):
    """An EventBridge-style filter: every key of the pattern present and matching; a list holds
    the accepted values."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(k in value and matches(p, value[k]) for k, p in pattern.items())
    if isinstance(pattern, list):
        return value in pattern
    return pattern == value


def invoke(url, records, timeout):
    """Sends one batch. Returns the index of the first record to retry, or None if all succeeded."""
    body = json.dumps({"Records": records}).encode()
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=timeout) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as e:
        log(f"invoke: HTTP {e.code}: {e.read()[:300]!r}: the whole batch is retried")
        return 0
    except (urllib.error.URLError, OSError) as e:
        log(f"invoke: no answer from {url}: {e}: the whole batch is retried")
        return 0
    try:
        answer = json.loads(raw) if raw.strip() else {}
    except ValueError:
        log(f"invoke: the answer is not JSON: {raw[:300]!r}: the whole batch is retried")
        return 0
    if not isinstance(answer, dict):
        return None
    if "errorType" in answer or "errorMessage" in answer:
        log(f"invoke: the function failed: {answer.get('errorType')}: {answer.get('errorMessage')}: the whole batch is retried")
        return 0
    failures = answer.get("batchItemFailures") or []
    if not failures:
        return None
    seqs = [r["dynamodb"]["SequenceNumber"] for r in records]
    first = None
    for f in failures:
        ident = f.get("itemIdentifier") if isinstance(f, dict) else None
        if ident not in seqs:
            log(f"invoke: batchItemFailures names {ident!r}, not a record of the batch: the whole batch is retried")
            return 0
        i = seqs.index(ident)
        first = i if first is None else min(first, i)
    return first


class Shard:
    def __init__(self, shard_id, iterator):
        self.id = shard_id
        self.iterator = iterator
        # Records read but not yet delivered (a batch being retried).
        self.pending = []
        self.retries = 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--table", required=True)
    p.add_argument("--invoke-url", required=True, help="the function's Invoke URL under cargo lambda watch")
    p.add_argument("--endpoint", default=os.environ.get("AWS_ENDPOINT_URL"))
    p.add_argument("--start", choices=["latest", "trim_horizon"], default="latest")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--max-retries", type=int, default=3)
    p.add_argument("--poll-seconds", type=float, default=1.0)
    p.add_argument("--timeout", type=float, default=120.0, help="seconds one invocation may take")
    p.add_argument("--filter", type=json.loads, default=None, help="a FilterCriteria pattern (JSON)")
    p.add_argument("--idle-exit", type=float, default=0.0, help="exit after this many seconds without records (0: never)")
    a = p.parse_args()
    if not 1 <= a.batch_size <= 1000:
        sys.exit("--batch-size: 1 to 1000 (Lambda's limit for a DynamoDB stream)")
    region = os.environ.get("AWS_REGION", "us-east-1")
    cfg = Config(retries={"max_attempts": 3}, connect_timeout=5, read_timeout=30)
    ddb = boto3.client("dynamodb", endpoint_url=a.endpoint, region_name=region, config=cfg)
    streams = boto3.client("dynamodbstreams", endpoint_url=a.endpoint, region_name=region, config=cfg)

    # The stream may be enabled a moment after the table exists.
    stream_arn = None
    waited = False
    while stream_arn is None:
        try:
            stream_arn = ddb.describe_table(TableName=a.table)["Table"].get("LatestStreamArn")
        except (BotoCoreError, ClientError) as e:
            log(f"describe_table {a.table}: {e}")
        if stream_arn is None:
            if not waited:
                log(f"table {a.table} has no stream (yet): waiting for one")
                waited = True
            time.sleep(a.poll_seconds)
    log(f"polling {stream_arn} from {a.start.upper()}, invoking {a.invoke_url}")

    shards = {}
    last_activity = time.monotonic()
    delivered = dropped = 0
    while True:
        # New shards (a stream splits them over time), each once.
        try:
            desc = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]
            for s in desc.get("Shards", []):
                sid = s["ShardId"]
                if sid not in shards:
                    it = streams.get_shard_iterator(
                        StreamArn=stream_arn, ShardId=sid,
                        ShardIteratorType="LATEST" if a.start == "latest" else "TRIM_HORIZON",
                    )["ShardIterator"]
                    shards[sid] = Shard(sid, it)
        except (BotoCoreError, ClientError) as e:
            log(f"describe_stream: {e}")
        busy = False
        for shard in shards.values():
            if not shard.pending and shard.iterator:
                try:
                    out = streams.get_records(ShardIterator=shard.iterator, Limit=a.batch_size)
                except (BotoCoreError, ClientError) as e:
                    log(f"get_records {shard.id}: {e}")
                    continue
                shard.iterator = out.get("NextShardIterator")
                shard.pending = [lambda_record(r, stream_arn, region) for r in out.get("Records", [])]
                if a.filter is not None:
                    shard.pending = [r for r in shard.pending if matches(a.filter, r)]
                shard.retries = 0
            if not shard.pending:
                continue
            busy = True
            batch = shard.pending
            first_failed = invoke(a.invoke_url, batch, a.timeout)
            kinds = {}
            for r in batch:
                kinds[r["eventName"]] = kinds.get(r["eventName"], 0) + 1
            summary = ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
            if first_failed is None:
                delivered += len(batch)
                log(f"{shard.id}: {len(batch)} records ({summary}) delivered")
                shard.pending = []
                continue
            delivered += first_failed
            rest = batch[first_failed:]
            if shard.retries >= a.max_retries:
                dropped += len(rest)
                log(f"{shard.id}: {len(rest)} records from {rest[0]['dynamodb']['SequenceNumber']} still failing "
                    f"after {a.max_retries} retries: dropped")
                shard.pending = []
                continue
            shard.retries += 1
            log(f"{shard.id}: {first_failed} of {len(batch)} records ({summary}) delivered; retry {shard.retries} "
                f"from {rest[0]['dynamodb']['SequenceNumber']}")
            shard.pending = rest
            time.sleep(min(2 ** shard.retries * 0.1, 2.0))
        if busy:
            last_activity = time.monotonic()
        else:
            if a.idle_exit and time.monotonic() - last_activity > a.idle_exit:
                log(f"no records for {a.idle_exit:g} s: exiting ({delivered} delivered, {dropped} dropped)")
                return 0 if dropped == 0 else 3
            time.sleep(a.poll_seconds)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
