#!/usr/bin/env bash
# `make upload`: sends a file to the running local stack the way S3 would. It puts FILE into moto
# at the key its function watches, builds the S3 ObjectCreated event from the stored object (from
# the template in events/s3/), invokes the function through `cargo lambda invoke` against the
# running `cargo lambda watch`, and says what came of it.
#
# Needs the stack of `make dev` running (in another terminal). Talks to 127.0.0.1 only.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"

usage() {
    cat <<'USAGE'
Usage: make upload FILE=<path> KIND=batch|model|labels|list [TENANT=demo] [NAME=<name>] [ACTIVATE=1]
                   [FEATURES=file|stored] [MANIFEST=<path>]
   or: scripts/upload.sh --file <path> --kind batch|model|labels|list [--tenant T] [--name N]
                         [--activate] [--features file|stored] [--manifest <path>]

Uploads FILE to the local stack's S3 (moto) and invokes the function that the upload triggers on
AWS, through `cargo lambda invoke` against the running `cargo lambda watch`. Start the stack first
with `make dev` in another terminal.

KIND=batch    s3://<DATA_BUCKET>/batches/incoming/<tenant>/<name>   -> batch-score
              FILE: .csv, .ndjson or .jsonl, optionally .gz (kept gzipped, name and all).
              NAME: the file name in the key (default: FILE's name; its extensions are kept).
              FEATURES=stored scores with the stored aggregates (x-amz-meta-features);
              the default, file, computes features from the file's own history.
              Prints the results, summary and error-report keys and the summary's counts.
KIND=model    s3://<MODEL_BUCKET>/models/incoming/<tenant>/<file name>   -> model-import
              FILE: a Verdict artifact (.vmodel), a LightGBM text model (.txt) or an XGBoost
              JSON model (.json), uncompressed.
              NAME: the registry name (x-amz-meta-name). ACTIVATE=1 activates it if accepted
              (x-amz-meta-activate: true). MANIFEST: a manifest JSON, put first at
              <key>.manifest.json (see shared/src/registry.rs for its fields).
              Prints accepted or rejected, with the version, status and reason.
KIND=labels   s3://<DATA_BUCKET>/labels/incoming/<tenant>/<name>   -> labels
              FILE: .csv, .ndjson or .jsonl, optionally .gz: transaction_id, label (fraud|legit),
              source, labelled_at. NAME as for batch. Prints the counts and the error report key.
KIND=list     s3://<DATA_BUCKET>/lists/incoming/<tenant>/<list name>.<ext>   -> list-import
              FILE: .csv or .txt, optionally .gz: one value a line, optionally
              ,<expires_at>,<note> (header value,expires_at,note optional). The list must exist
              (POST /v1/lists). NAME: the list's name (default: FILE's name without its
              extensions). Prints added, updated, rejected, the list's version and the error report.

TENANT defaults to VERDICT_TENANT, else demo. The stack's ports and names come from the same
variables as `make dev`: MOTO_PORT (5010), API_PORT (9000), TABLE_NAME, MODEL_BUCKET
(verdict-models-local), DATA_BUCKET (verdict-data-local).
The event sent is kept in .local/events/ for re-delivery (a duplicate delivery is processed once).

Exit status: 0 when the function accepted the file, now or on an earlier delivery (batch completed
or already done, model accepted, labels or list completed), 3 when it ran but refused or did not finish it
(failed, already failed, rejected, skipped, busy, handed over), 1 on any other error (the stack not
running, an upload or invoke failure), 2 on bad usage.
USAGE
}

usage_error() {
    printf 'error: %s\n' "$*" >&2
    echo "Run \`make upload\` (or scripts/upload.sh --help) for usage." >&2
    exit 2
}

FILE="" KIND="" NAME="" ACTIVATE="" FEATURES="" MANIFEST=""
UPLOAD_TENANT="$TENANT"
if (($# == 0)); then
    usage
    exit 0
fi
while (($#)); do
    case "$1" in
    -h | --help)
        usage
        exit 0
        ;;
    --file | --kind | --tenant | --name | --features | --manifest)
        (($# >= 2)) || usage_error "$1 needs a value"
        case "$1" in
        --file) FILE="$2" ;;
        --kind) KIND="$2" ;;
        --tenant) UPLOAD_TENANT="$2" ;;
        --name) NAME="$2" ;;
        --features) FEATURES="$2" ;;
        --manifest) MANIFEST="$2" ;;
        esac
        shift 2
        ;;
    --activate)
        ACTIVATE=1
        shift
        ;;
    *) usage_error "unknown argument: $1" ;;
    esac
done

# --- Arguments ------------------------------------------------------------------------------
case "$KIND" in
batch) FUNCTION=batch-score BUCKET="$DATA_BUCKET" PREFIX="batches/incoming" ;;
model) FUNCTION=model-import BUCKET="$MODEL_BUCKET" PREFIX="models/incoming" ;;
labels) FUNCTION=labels BUCKET="$DATA_BUCKET" PREFIX="labels/incoming" ;;
list) FUNCTION=list-import BUCKET="$DATA_BUCKET" PREFIX="lists/incoming" ;;
"") usage_error "KIND is missing: set KIND=batch, KIND=model, KIND=labels or KIND=list" ;;
*) usage_error "unknown KIND \"$KIND\": expected batch, model, labels or list" ;;
esac

[[ -n "$FILE" ]] || usage_error "FILE is missing: set FILE=<path> to the file to upload (KIND=$KIND)"
[[ -e "$FILE" ]] || usage_error "FILE $FILE does not exist"
[[ -f "$FILE" ]] || usage_error "FILE $FILE is not a regular file"
[[ -r "$FILE" ]] || usage_error "FILE $FILE is not readable"

# The tenant goes into the key; the functions accept A-Z a-z 0-9 - _ . : (as `verdict keys`).
[[ "$UPLOAD_TENANT" =~ ^[A-Za-z0-9._:-]{1,64}$ ]] ||
    usage_error "TENANT \"$UPLOAD_TENANT\" must be 1-64 of A-Z a-z 0-9 - _ . :"

base="$(basename -- "$FILE")"
lower="${base,,}"
if [[ "$KIND" == model ]]; then
    case "$lower" in
    *.gz) usage_error "$base is gzipped; model-import reads models uncompressed: gunzip it first" ;;
    *.txt | *.json | *.vmodel) ;;
    *) usage_error "$base: a model must be a .vmodel (Verdict artifact), .txt (LightGBM text) or .json (XGBoost JSON) file" ;;
    esac
    [[ -z "$FEATURES" ]] || usage_error "FEATURES applies to KIND=batch only"
    [[ "$lower" != *.manifest.json ]] ||
        usage_error "$base is a manifest: pass it as MANIFEST=$FILE with the model as FILE"
    if [[ -n "$MANIFEST" ]]; then
        [[ -f "$MANIFEST" && -r "$MANIFEST" ]] || usage_error "MANIFEST $MANIFEST is not a readable file"
    fi
    # The name in the key is the file's; NAME is the registry name (x-amz-meta-name).
    OBJECT_NAME="$base"
elif [[ "$KIND" == list ]]; then
    [[ "$lower" =~ \.(csv|txt)(\.gz)?$ ]] ||
        usage_error "$base: a list file must be .csv or .txt, optionally followed by .gz"
    [[ -z "$ACTIVATE$MANIFEST$FEATURES" ]] || usage_error "ACTIVATE, MANIFEST and FEATURES do not apply to KIND=list"
    ext="${base: -${#BASH_REMATCH[0]}}"
    # The key's file name is the list's name: NAME, else FILE's name without its extensions.
    list_name="${NAME:-${base:0:${#base}-${#ext}}}"
    [[ "$list_name" =~ ^[A-Za-z0-9._:-]{1,128}$ ]] ||
        usage_error "the list name \"$list_name\" must be 1-128 of A-Z a-z 0-9 - _ . : (set NAME=<list name>)"
    OBJECT_NAME="$list_name$ext"
else
    case "$lower" in
    *.csv | *.ndjson | *.jsonl | *.csv.gz | *.ndjson.gz | *.jsonl.gz) ;;
    *) usage_error "$base: a $KIND file must be .csv, .ndjson or .jsonl, optionally followed by .gz" ;;
    esac
    [[ -z "$ACTIVATE" ]] || usage_error "ACTIVATE applies to KIND=model only"
    [[ -z "$MANIFEST" ]] || usage_error "MANIFEST applies to KIND=model only"
    if [[ -n "$FEATURES" ]]; then
        [[ "$KIND" == batch ]] || usage_error "FEATURES applies to KIND=batch only"
        [[ "$FEATURES" == file || "$FEATURES" == stored ]] ||
            usage_error "FEATURES \"$FEATURES\" must be file or stored"
    fi
    OBJECT_NAME="$base"
    if [[ -n "$NAME" ]]; then
        # NAME keeps FILE's extensions, so the function reads it the same way.
        [[ "$lower" =~ \.(csv|ndjson|jsonl)(\.gz)?$ ]]
        ext="${base: -${#BASH_REMATCH[0]}}"
        if [[ "${NAME,,}" =~ \.(csv|ndjson|jsonl)(\.gz)?$ ]]; then
            OBJECT_NAME="$NAME"
        else
            OBJECT_NAME="$NAME$ext"
        fi
        [[ "$OBJECT_NAME" != */ && "$OBJECT_NAME" != /* && -n "${OBJECT_NAME%%.*}" ]] ||
            usage_error "NAME \"$NAME\" must be a file name (it may hold folders, not start or end with /)"
    fi
fi
KEY="$PREFIX/$UPLOAD_TENANT/$OBJECT_NAME"
TEMPLATE="$ROOT/events/s3/$KIND-upload.json"
[[ -f "$TEMPLATE" ]] || die "the event template $TEMPLATE is missing"

# --- The stack ------------------------------------------------------------------------------
[[ -x "$VENV/bin/python" && -x "$VENV/bin/cargo-lambda" ]] ||
    die "$VENV is missing python or cargo-lambda: run \`make venv\` (or \`make dev\`, which does)"
port_open "$MOTO_PORT" ||
    die "the local stack is not running: nothing listens on 127.0.0.1:$MOTO_PORT (moto, MOTO_PORT). Start it with \`make dev\` in another terminal, or set MOTO_PORT to the port it uses"
port_open "$API_PORT" ||
    die "the local stack is not running: nothing listens on 127.0.0.1:$API_PORT (cargo lambda watch, API_PORT). Start it with \`make dev\` in another terminal, or set API_PORT to the port it uses"
use_local_aws

EVENTS_DIR="$LOCAL/events"
mkdir -p "$EVENTS_DIR"
stamp="$(date -u +%Y%m%dT%H%M%SZ)-$$"
EVENT_FILE="$EVENTS_DIR/$KIND-upload-$stamp.json"
RESPONSE_FILE="$EVENTS_DIR/$KIND-response-$stamp.json"

# --- Upload and event -----------------------------------------------------------------------
say "uploading $FILE to s3://$BUCKET/$KEY"
"$VENV/bin/python" - "$KIND" "$FILE" "$BUCKET" "$KEY" "$TEMPLATE" "$EVENT_FILE" \
    "$NAME" "$ACTIVATE" "$FEATURES" "$MANIFEST" <<'PY'
import getpass, json, os, sys, urllib.parse
from datetime import datetime, timezone

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

kind, path, bucket, key, template, event_file, name, activate, features, manifest = sys.argv[1:]

def die(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(1)

with open(path, "rb") as f:
    head = f.read(2)
gzipped = head == b"\x1f\x8b"
if key.lower().endswith(".gz") and not gzipped:
    die(f"{path} ends in .gz but is not gzip-compressed; rename it or compress it")
if not key.lower().endswith(".gz") and gzipped:
    die(f"{path} is gzip-compressed but its name does not end in .gz; the function would read it as plain text")

s3 = boto3.client(
    "s3",
    endpoint_url=os.environ["AWS_ENDPOINT_URL"],
    region_name=os.environ["AWS_REGION"],
    config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}, connect_timeout=5, read_timeout=60),
)
endpoint = os.environ["AWS_ENDPOINT_URL"]
try:
    s3.head_bucket(Bucket=bucket)
except ClientError as e:
    code = e.response.get("Error", {}).get("Code", "")
    if code in ("404", "NoSuchBucket", "NotFound"):
        die(f"bucket {bucket} does not exist in moto at {endpoint}: is the stack on this port the one "
            f"`make dev` bootstrapped (MODEL_BUCKET/DATA_BUCKET)?")
    die(f"cannot reach bucket {bucket} at {endpoint}: {e}")
except BotoCoreError as e:
    die(f"cannot reach moto at {endpoint}: {e}")

metadata = {}
if kind == "model":
    if name:
        metadata["name"] = name
    if activate:
        metadata["activate"] = "true"
if kind == "batch" and features:
    metadata["features"] = features

lower = key.lower()
if gzipped:
    content_type = "application/gzip"
elif lower.endswith(".csv"):
    content_type = "text/csv"
elif lower.endswith((".ndjson", ".jsonl")):
    content_type = "application/x-ndjson"
elif lower.endswith(".json"):
    content_type = "application/json"
elif lower.endswith(".txt"):
    content_type = "text/plain"
else:
    content_type = "application/octet-stream"

try:
    if manifest:
        # Read by model-import when the model arrives, so it goes first.
        with open(manifest, "rb") as f:
            s3.put_object(Bucket=bucket, Key=key + ".manifest.json", Body=f.read(), ContentType="application/json")
        print(f"    manifest: s3://{bucket}/{key}.manifest.json", file=sys.stderr)
    # No Content-Encoding for a .gz: the object is the gzip file itself, as the functions expect.
    with open(path, "rb") as f:
        put = s3.put_object(Bucket=bucket, Key=key, Body=f, ContentType=content_type, Metadata=metadata)
    head = s3.head_object(Bucket=bucket, Key=key)
except (BotoCoreError, ClientError) as e:
    die(f"uploading to s3://{bucket}/{key} failed: {e}")

etag = head["ETag"].strip('"')
size = head["ContentLength"]
version_id = put.get("VersionId")
now = datetime.now(timezone.utc)

with open(template) as f:
    event = json.load(f)
record = event["Records"][0]
record["awsRegion"] = os.environ["AWS_REGION"]
record["eventTime"] = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
record["eventName"] = "ObjectCreated:Put"
record["userIdentity"]["principalId"] = f"local:{getpass.getuser()}"
record["requestParameters"]["sourceIPAddress"] = "127.0.0.1"
request_id = put.get("ResponseMetadata", {}).get("RequestId")
if request_id:
    record["responseElements"]["x-amz-request-id"] = request_id
s3rec = record["s3"]
s3rec["bucket"]["name"] = bucket
s3rec["bucket"]["arn"] = f"arn:aws:s3:::{bucket}"
obj = s3rec["object"]
# As S3 sends it: URL-encoded, a space as "+".
obj["key"] = urllib.parse.quote_plus(key, safe="/")
obj["size"] = size
obj["eTag"] = etag
obj["sequencer"] = f"{int(now.timestamp() * 1e9):X}"
if version_id and version_id != "null":
    obj["versionId"] = version_id
else:
    obj.pop("versionId", None)
with open(event_file, "w") as f:
    json.dump(event, f, indent=2)
    f.write("\n")
meta = ", ".join(f"x-amz-meta-{k}: {v}" for k, v in metadata.items()) or "no metadata"
print(f"    {size} bytes, etag {etag}, {content_type}, {meta}", file=sys.stderr)
PY

# --- Invoke ---------------------------------------------------------------------------------
rel_event="${EVENT_FILE#"$ROOT"/}"
say "invoking $FUNCTION with $rel_event (the first invocation builds the function: minutes)"
invoke=("$VENV/bin/cargo-lambda" lambda invoke "$FUNCTION" --invoke-address 127.0.0.1
    --invoke-port "$API_PORT" --data-file "$EVENT_FILE" --output-format json)
status=0
"${invoke[@]}" >"$RESPONSE_FILE" 2>"$RESPONSE_FILE.err" || status=$?
if ((status != 0)); then
    cat "$RESPONSE_FILE" "$RESPONSE_FILE.err" >&2
    [[ -f "$LOCAL/watch.log" ]] && {
        echo "--- last lines of .local/watch.log:" >&2
        tail -n 15 "$LOCAL/watch.log" >&2
    }
    die "cargo lambda invoke $FUNCTION failed (exit $status); the event is in $rel_event"
fi
rm -f "$RESPONSE_FILE.err"

# --- Report ---------------------------------------------------------------------------------
report_status=0
"$VENV/bin/python" - "$KIND" "$RESPONSE_FILE" <<'PY' || report_status=$?
import json, os, sys

import boto3
from botocore.config import Config

kind, response_file = sys.argv[1:]
raw = open(response_file, encoding="utf-8", errors="replace").read().strip()
try:
    out = json.loads(raw)
except ValueError:
    print(f"error: the function's answer is not JSON: {raw[:500]}", file=sys.stderr)
    sys.exit(1)
if isinstance(out, dict) and ("errorType" in out or "errorMessage" in out):
    print(f"error: the function failed: {out.get('errorType', '')}: {out.get('errorMessage', '')}", file=sys.stderr)
    sys.exit(1)

s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name=os.environ["AWS_REGION"],
                  config=Config(s3={"addressing_style": "path"}))

def text(bucket, key, limit=1 << 20):
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read(limit)
        return body.decode("utf-8", "replace")
    except Exception as e:  # shown, not fatal: the outcome is already known
        return f"(cannot read s3://{bucket}/{key}: {e})"

def show_errors(bucket, key, rejected):
    lines = text(bucket, key).splitlines()
    print(f"  error report:  s3://{bucket}/{key} ({max(len(lines) - 1, 0)} rows)")
    for line in lines[: 6 if rejected else 1]:
        print(f"      {line}")
    if len(lines) > 6:
        print(f"      ... {len(lines) - 6} more")

def batch_summary(s):
    c = s["counts"]
    scored = c["approve"] + c["review"] + c["block"]
    bucket = s["source"]["bucket"]
    print(f"  results:       s3://{bucket}/{s['results_key']}")
    print(f"  summary:       s3://{bucket}/{s['errors_key'].rsplit('.errors.csv', 1)[0]}.summary.json")
    print(f"  rows read {c['rows_read']}, scored {scored}, rejected {c['rows_rejected']}; "
          f"approve {c['approve']}, review {c['review']}, block {c['block']}")
    t = s.get("timings") or {}
    print(f"  model {s.get('model_version')}, features from {s.get('feature_source')}, "
          f"{t.get('busy_ms', 0)} ms busy, {t.get('rows_per_second', 0):.0f} rows/s, "
          f"{t.get('invocations', 1)} invocation(s)")
    show_errors(bucket, s["errors_key"], c["rows_rejected"] > 0)

def batch_summary_key(key):
    # batches/incoming/{tenant}/{name}.{csv|ndjson|jsonl}[.gz] -> batches/results/{tenant}/{name}.summary.json
    rest = key[len("batches/incoming/"):]
    low = rest.lower()
    if low.endswith(".gz"):
        rest, low = rest[:-3], low[:-3]
    for ext in (".csv", ".ndjson", ".jsonl"):
        if low.endswith(ext):
            rest = rest[: -len(ext)]
            break
    return f"batches/results/{rest}.summary.json"

ok = True
if kind == "batch":
    for o in out.get("objects", []):
        st = o.get("status")
        print(f"batch-score: s3://{o['bucket']}/{o['key']}: {st.replace('_', ' ')}")
        if st == "completed":
            batch_summary(o["summary"])
        elif st == "already_done":
            print("  this object was scored before (a duplicate delivery): nothing was done now; its summary:")
            try:
                batch_summary(json.loads(text(o["bucket"], batch_summary_key(o["key"]))))
            except (ValueError, KeyError):
                print(f"  (cannot read s3://{o['bucket']}/{batch_summary_key(o['key'])})")
        elif st in ("failed", "already_failed"):
            ok = False
            print(f"  reason: {o.get('error')}")
        elif st == "handed_over":
            ok = False
            print(f"  checkpointed at line {o.get('next_line')} and handed over to a new invocation "
                  f"(locally that needs the Lambda API; re-send the event to resume)")
        elif st == "skipped":
            ok = False
            print(f"  reason: {o.get('reason')}")
        else:
            ok = False
elif kind == "model":
    for r in out.get("records", []):
        oc = r.get("outcome")
        dup = " (a duplicate delivery: the first outcome, nothing done now)" if r.get("duplicate") else ""
        print(f"model-import: s3://{r['bucket']}/{r['key']}: {oc}{dup}")
        if oc == "accepted":
            print(f"  registered as version {r['version']} ({r['name']}), status {r['status']}")
            print(f"  source {r['source']} ({r['format']}), check: {r['check']}")
            print(f"  artifact: s3://{r['bucket']}/{r['object_key']}")
            if r["status"] == "active":
                prev = r.get("previous_version") or "none"
                print(f"  now the active model; previous active version: {prev}")
            else:
                print("  kept as a candidate (not activated; ACTIVATE=1 or POST /v1/models/{id}/activate)")
        elif oc == "rejected":
            ok = False
            print(f"  registered as rejected version {r['version']}, code {r['code']}")
            print(f"  reason: {r['reason']}")
            print(f"  moved to: s3://{r['bucket']}/{r['object_key']}; the active model is unchanged")
        else:
            ok = False
            print(f"  reason: {r.get('reason')}")
elif kind == "labels":
    for r in out.get("records", []):
        oc = r.get("outcome")
        dup = " (a duplicate delivery: the first outcome, nothing done now)" if r.get("duplicate") else ""
        print(f"labels: s3://{r['bucket']}/{r['key']}: {oc.replace('_', ' ')}{dup}")
        if oc in ("completed", "failed"):
            ok = ok and oc == "completed"
            s = r["summary"]
            # The counts are flattened into the summary (LabelSummary).
            names = ("rows_read", "applied", "unchanged", "rejected", "unknown", "superseded")
            c = {k: s.get(k, 0) for k in names}
            print("  " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in c.items()))
            print("  (applied: the label changed; unchanged: it already had it; rejected: bad rows and"
                  " unknown transactions; superseded: older than the label stored)")
            print(f"  summary:       s3://{r['bucket']}/{s['errors_key'].rsplit('.errors.csv', 1)[0]}.summary.json")
            show_errors(r["bucket"], s["errors_key"], c.get("rejected", 0) > 0)
            if s.get("stopped_early"):
                ok = False
                print(f"  stopped early: {s['stopped_early']}")
        elif oc == "handed_over":
            ok = False
            print(f"  checkpointed at line {r.get('next_line')}; re-send the event to continue")
        else:
            ok = False
            if r.get("reason"):
                print(f"  reason: {r['reason']}")
elif kind == "list":
    for r in out.get("records", []):
        oc = r.get("outcome")
        dup = " (a duplicate delivery: the first outcome, nothing done now)" if r.get("duplicate") else ""
        print(f"list-import: s3://{r['bucket']}/{r['key']}: {oc.replace('_', ' ')}{dup}")
        if oc in ("completed", "failed"):
            ok = ok and oc == "completed"
            s = r["summary"]
            names = ("rows_read", "added", "updated", "rejected")
            c = {k: s.get(k, 0) for k in names}
            print("  " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in c.items()))
            print(f"  list {s.get('list')}: version {s.get('list_version')}, {s.get('list_entries')} entries")
            print(f"  summary:       s3://{r['bucket']}/{s['errors_key'].rsplit('.errors.csv', 1)[0]}.summary.json")
            show_errors(r["bucket"], s["errors_key"], c.get("rejected", 0) > 0)
            if s.get("stopped_early"):
                ok = False
                print(f"  stopped early: {s['stopped_early']} (from line {s.get('next_line')})")
        elif oc == "handed_over":
            ok = False
            print(f"  checkpointed at line {r.get('next_line')}; re-send the event to continue")
        else:
            ok = False
            if r.get("reason"):
                print(f"  reason: {r['reason']}")
if not ok:
    sys.exit(3)
PY
rel_response="${RESPONSE_FILE#"$ROOT"/}"
echo "(event: $rel_event; the function's answer: $rel_response; re-deliver with:" \
    ".venv/bin/cargo-lambda lambda invoke $FUNCTION -A 127.0.0.1 -P $API_PORT --data-file $rel_event)"
exit "$report_status"
