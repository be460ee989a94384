"""A fault-injecting HTTP reverse proxy in front of the local moto server (tests/moto_server.py).

moto_server.py serialises every request, so nothing behind it ever sees a TransactionConflict, a
throttle, a 500, a reset or a timeout. This proxy sits between the SDK and moto, handles requests
on concurrent threads (clients really overlap here; moto still applies them one at a time), and
per operation, with a seeded RNG and configured rates, can:

- answer a DynamoDB error without forwarding: `conflict` (TransactionCanceledException with a
  TransactionConflict reason per item, TransactWriteItems only), `throughput`
  (ProvisionedThroughputExceededException, 400), `throttling` (ThrottlingException, 400),
  `internal` (500 InternalServerError); for S3 `throttling` is 503 SlowDown and `internal` 500
  InternalError;
- `reset`: read the request and reset the connection without forwarding it;
- `delay`: forward it (so it is applied) and answer only after `delay_ms`; a client whose attempt
  timeout is shorter gives up and retries a request that was applied;
- `drop`: forward it (so it is applied) and reset the connection instead of answering: the case
  that breaks naive idempotency.

It also emulates what moto lacks and real DynamoDB does:

- ClientRequestToken idempotency of TransactWriteItems. moto ignores the token; DynamoDB answers a
  repeat of a token that succeeded within 10 minutes with success without applying it again, a
  repeat with other parameters with IdempotentParameterMismatchException, and a repeat while the
  first is still running with TransactionInProgressException. The SDK fills the token and keeps it
  across its own retries, so without this a `drop` or `delay` fault would double-apply a
  transaction in a way DynamoDB never does. The cache is bounded (expiry and a size limit).
- Conflicts keyed on items (`simulate_conflicts`): the (table, key) of every item of a
  TransactWriteItems is claimed for `hold_ms` before it is forwarded (DynamoDB's latency window;
  not the wait for moto, which DynamoDB does not have); a transaction touching a claimed item is
  cancelled with TransactionConflict on those items and None on the others.

Control endpoint (never forwarded; bucket names cannot contain `_`):

- `GET /__faults`: `{"config": ..., "stats": ...}`.
- `POST /__faults` with a JSON object: replaces the keys given (`seed` reseeds the RNG). Config:
  `seed`, `hold_ms`, `delay_ms`, `simulate_conflicts`, `key_attributes` (the tables' key
  attribute names), `rates`: `{op: {kind: rate}}` where op is an operation name
  (`TransactWriteItems`, `s3:PutObject`, ...), `dynamodb:*`, `s3:*` or `*`; the most specific entry
  applies, and the rates of its kinds add up to the chance a request is faulted; `next`:
  `{op: [kind or "none", ...]}`, the faults of the next requests of that exact operation, in order,
  before any rate applies (for deterministic tests).
- `POST /__faults/reset`: zeroes the stats (config and token cache stay).

Stats per operation: requests, forwarded, faults by kind, conflicts (simulated, by item), token
replays, in-progress refusals; and the most transactions in flight at once. Every map is bounded.

Usage: .venv/bin/python tests/fault_proxy.py --upstream http://127.0.0.1:PORT --port PORT2
"""

import argparse
import collections
import hashlib
import http.client
import http.server
import json
import random
import socket
import socketserver
import struct
import sys
import threading
import time
import urllib.parse

CONTROL = "/__faults"
TOKEN_TTL_SECS = 600
TOKEN_CACHE_MAX = 50_000
MAX_OPS = 200
PRE_FORWARD = ("conflict", "throughput", "throttling", "internal", "reset")
POST_FORWARD = ("delay", "drop")
KINDS = PRE_FORWARD + POST_FORWARD
DDB_PREFIX = "com.amazonaws.dynamodb.v20120810#"

DEFAULT_CONFIG = {
    "seed": 42,
    "hold_ms": 0,
    "delay_ms": 1500,
    "simulate_conflicts": False,
    "key_attributes": ["pk", "sk"],
    "rates": {},
    "next": {},
}


class State:
    """Config, RNG, stats, token cache and item claims; one lock guards them all."""

    def __init__(self):
        self.lock = threading.Lock()
        self.config = json.loads(json.dumps(DEFAULT_CONFIG))
        self.rng = random.Random(self.config["seed"])
        self.tokens = collections.OrderedDict()  # token -> (body digest, expires, response or None)
        self.claims = {}  # item id -> transaction serial
        self.serial = 0
        self.in_flight = 0
        self.reset_stats()

    def reset_stats(self):
        self.stats = {}
        self.max_in_flight = 0

    def op_stats(self, op):
        if op not in self.stats and len(self.stats) >= MAX_OPS:
            op = "other"
        return self.stats.setdefault(
            op,
            {
                "requests": 0,
                "forwarded": 0,
                "faults": {},
                "conflicts": 0,
                "token_replays": 0,
                "in_progress": 0,
            },
        )

    def count(self, op, field, kind=None):
        with self.lock:
            s = self.op_stats(op)
            if kind is None:
                s[field] += 1
            else:
                s[field][kind] = s[field].get(kind, 0) + 1

    def snapshot(self):
        with self.lock:
            return {
                "config": self.config,
                "stats": {
                    "ops": self.stats,
                    "max_in_flight_transactions": self.max_in_flight,
                    "token_cache": len(self.tokens),
                },
            }

    def configure(self, changes):
        if not isinstance(changes, dict):
            raise ValueError("the body must be a JSON object")
        unknown = set(changes) - set(DEFAULT_CONFIG)
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        rates = changes.get("rates", {})
        if not isinstance(rates, dict):
            raise ValueError("rates must be an object")
        for op, kinds in rates.items():
            if not isinstance(kinds, dict):
                raise ValueError(f"rates[{op}] must be an object")
            for kind, rate in kinds.items():
                if kind not in KINDS:
                    raise ValueError(f"rates[{op}]: unknown kind {kind!r} (one of {list(KINDS)})")
                if not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
                    raise ValueError(f"rates[{op}][{kind}] must be a number in [0, 1]")
            if sum(kinds.values()) > 1:
                raise ValueError(f"rates[{op}] add up to more than 1")
        script = changes.get("next", {})
        if not isinstance(script, dict):
            raise ValueError("next must be an object")
        for op, kinds in script.items():
            if not isinstance(kinds, list) or any(k not in KINDS + ("none",) for k in kinds):
                raise ValueError(f"next[{op}] must be a list of kinds or \"none\"")
        if len(script) > MAX_OPS or sum(len(k) for k in script.values()) > 100_000:
            raise ValueError("next is too long")
        with self.lock:
            self.config.update(json.loads(json.dumps(changes)))
            if "seed" in changes:
                self.rng = random.Random(changes["seed"])

    def draw(self, op, service):
        """The fault kind for this request, or None."""
        with self.lock:
            script = self.config["next"].get(op)
            if script:
                kind = script.pop(0)
                return None if kind == "none" else kind
            rates = self.config["rates"]
            kinds = rates.get(op) or rates.get(f"{service}:*") or rates.get("*") or {}
            if not kinds:
                return None
            r = self.rng.random()
            for kind in sorted(kinds):
                if kind == "conflict" and op != "TransactWriteItems":
                    continue
                r -= kinds[kind]
                if r < 0:
                    return kind
            return None

    # ClientRequestToken idempotency.

    def token_lookup(self, token, digest):
        """None (new: now marked in flight), or ("replay", response), "mismatch" or "in_progress"."""
        now = time.monotonic()
        with self.lock:
            while self.tokens:
                oldest = next(iter(self.tokens.values()))
                if oldest[1] > now and len(self.tokens) <= TOKEN_CACHE_MAX:
                    break
                self.tokens.popitem(last=False)
            entry = self.tokens.get(token)
            if entry is None:
                self.tokens[token] = (digest, now + TOKEN_TTL_SECS, None)
                return None
            if entry[0] != digest:
                return ("mismatch", None)
            if entry[2] is None:
                return ("in_progress", None)
            return ("replay", entry[2])

    def token_done(self, token, digest, response):
        """Remembers a success for replays; forgets a failure (it may be sent again)."""
        with self.lock:
            if response is None:
                self.tokens.pop(token, None)
            else:
                self.tokens[token] = (digest, time.monotonic() + TOKEN_TTL_SECS, response)

    # Item claims for conflict simulation.

    def claim(self, items):
        """Claims every item, or returns the indexes of those another transaction holds."""
        with self.lock:
            held = [i for i, item in enumerate(items) if item in self.claims]
            if held:
                return None, held
            self.serial += 1
            for item in items:
                self.claims[item] = self.serial
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return self.serial, []

    def release(self, serial, items):
        with self.lock:
            for item in items:
                if self.claims.get(item) == serial:
                    del self.claims[item]
            self.in_flight -= 1


STATE = State()
UPSTREAM = threading.local()


def s3_operation(method, path, query, headers):
    q = urllib.parse.parse_qs(query, keep_blank_values=True)
    parts = [p for p in path.split("/") if p]
    on_object = len(parts) >= 2
    if method == "PUT":
        if "partNumber" in q:
            return "s3:UploadPart"
        if not on_object:
            return "s3:CreateBucket"
        return "s3:CopyObject" if "x-amz-copy-source" in headers else "s3:PutObject"
    if method == "POST":
        if "uploads" in q:
            return "s3:CreateMultipartUpload"
        if "uploadId" in q:
            return "s3:CompleteMultipartUpload"
        if "delete" in q:
            return "s3:DeleteObjects"
        return "s3:PostObject"
    if method == "DELETE":
        if "uploadId" in q:
            return "s3:AbortMultipartUpload"
        return "s3:DeleteObject" if on_object else "s3:DeleteBucket"
    if method == "GET":
        if "uploadId" in q:
            return "s3:ListParts"
        if not on_object:
            return "s3:ListMultipartUploads" if "uploads" in q else "s3:ListObjects"
        return "s3:GetObject"
    if method == "HEAD":
        return "s3:HeadObject" if on_object else "s3:HeadBucket"
    return f"s3:{method}"


def item_ids(body, key_attributes):
    """(table, key) of each item of a TransactWriteItems body, canonical, in order."""
    ids = []
    for entry in body.get("TransactItems", []):
        for kind in ("Put", "Update", "Delete", "ConditionCheck"):
            if kind in entry:
                part = entry[kind]
                attrs = part.get("Key") if kind != "Put" else part.get("Item", {})
                key = {a: attrs.get(a) for a in key_attributes if a in (attrs or {})}
                ids.append(json.dumps([part.get("TableName"), key], sort_keys=True))
    return ids


def ddb_error(status, kind, message, extra=None):
    body = {"__type": DDB_PREFIX + kind, "message": message}
    if extra:
        body.update(extra)
    return status, {"Content-Type": "application/x-amz-json-1.0", "x-amzn-ErrorType": kind}, json.dumps(body).encode()


def s3_error(status, code, message):
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
        f"<Message>{message}</Message><RequestId>fault-proxy</RequestId></Error>"
    ).encode()
    return status, {"Content-Type": "application/xml"}, body


def cancelled(count, conflicting):
    reasons = [
        {"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}
        if i in conflicting
        else {"Code": "None"}
        for i in range(count)
    ]
    codes = ", ".join(r["Code"] for r in reasons)
    return ddb_error(
        400,
        "TransactionCanceledException",
        f"Transaction cancelled, please refer cancellation reasons for specific reasons [{codes}]",
        {"CancellationReasons": reasons},
    )


def injected(kind, service, items):
    if service == "s3":
        if kind == "throttling" or kind == "throughput":
            return s3_error(503, "SlowDown", "Please reduce your request rate.")
        return s3_error(500, "InternalError", "We encountered an internal error. Please try again.")
    if kind == "conflict":
        return cancelled(max(items, 1), set(range(items)))
    if kind == "throughput":
        return ddb_error(
            400,
            "ProvisionedThroughputExceededException",
            "The level of configured provisioned throughput for the table was exceeded. Consider increasing "
            "your provisioning level with the UpdateTable API.",
        )
    if kind == "throttling":
        # DynamoDB's control plane names it in the coral namespace; the SDK reads the part after '#'.
        return 400, {"Content-Type": "application/x-amz-json-1.0"}, json.dumps(
            {"__type": "com.amazon.coral.availability#ThrottlingException", "message": "Rate of requests exceeds the allowed throughput."}
        ).encode()
    return ddb_error(500, "InternalServerError", "Internal server error")


HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "content-length",
    "host",
}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "verdict-fault-proxy"

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.handle_any()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_GET

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def reset(self):
        # SO_LINGER 0: close() sends RST, as a failed load balancer or host does.
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass
        self.close_connection = True

    def reply(self, status, headers, body):
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def control(self, body):
        try:
            if self.command == "GET" and self.path == CONTROL:
                return self.reply(200, {"Content-Type": "application/json"}, json.dumps(STATE.snapshot()).encode())
            if self.command == "POST" and self.path == CONTROL:
                STATE.configure(json.loads(body or b"{}"))
                return self.reply(200, {"Content-Type": "application/json"}, json.dumps(STATE.snapshot()).encode())
            if self.command == "POST" and self.path == CONTROL + "/reset":
                with STATE.lock:
                    STATE.reset_stats()
                return self.reply(200, {"Content-Type": "application/json"}, json.dumps(STATE.snapshot()).encode())
            return self.reply(404, {"Content-Type": "application/json"}, b'{"error": "no such control route"}')
        except (ValueError, json.JSONDecodeError) as e:
            return self.reply(400, {"Content-Type": "application/json"}, json.dumps({"error": str(e)}).encode())

    def forward(self, body):
        """Sends the request to moto; returns (status, headers, body)."""
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Content-Length"] = str(len(body))
        headers["Host"] = f"{self.server.upstream_host}:{self.server.upstream_port}"
        for attempt in (0, 1):
            conn = getattr(UPSTREAM, "conn", None)
            if conn is None:
                conn = UPSTREAM.conn = http.client.HTTPConnection(
                    self.server.upstream_host, self.server.upstream_port, timeout=120
                )
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                out = {k: v for k, v in resp.getheaders() if k.lower() not in HOP_BY_HOP}
                return resp.status, out, data
            except (http.client.HTTPException, OSError):
                conn.close()
                UPSTREAM.conn = None
                if attempt:
                    raise

    def handle_any(self):
        body = self.read_body()
        path, _, query = self.path.partition("?")
        if path == CONTROL or path.startswith(CONTROL + "/"):
            return self.control(body)
        target = self.headers.get("X-Amz-Target")
        if target:
            service, op = "dynamodb", target.rsplit(".", 1)[-1]
        else:
            service, op = "s3", s3_operation(self.command, path, query, {k.lower() for k in self.headers.keys()})
        STATE.count(op, "requests")

        transact = None
        if op == "TransactWriteItems":
            try:
                parsed = json.loads(body)
                with STATE.lock:
                    key_attributes = list(STATE.config["key_attributes"])
                transact = (parsed.get("ClientRequestToken"), item_ids(parsed, key_attributes))
            except (ValueError, AttributeError):
                transact = (None, [])

        kind = STATE.draw(op, service)
        if kind in PRE_FORWARD:
            STATE.count(op, "faults", kind)
            if kind == "reset":
                return self.reset()
            return self.reply(*injected(kind, service, len(transact[1]) if transact else 0))

        if transact is None:
            try:
                status, headers, data = self.forward(body)
            except (http.client.HTTPException, OSError) as e:
                return self.reply(502, {"Content-Type": "text/plain"}, f"upstream: {e}".encode())
            STATE.count(op, "forwarded")
            return self.after(op, kind, status, headers, data)

        token, items = transact
        digest = hashlib.sha256(body).hexdigest()
        if token:
            seen = STATE.token_lookup(token, digest)
            if seen is not None:
                what, cached = seen
                if what == "replay":
                    STATE.count(op, "token_replays")
                    return self.after(op, kind, *cached)
                if what == "mismatch":
                    return self.reply(
                        *ddb_error(400, "IdempotentParameterMismatchException", "The request uses the same client token as a previous, but non-identical request.")
                    )
                STATE.count(op, "in_progress")
                return self.reply(
                    *ddb_error(400, "TransactionInProgressException", "The transaction with the given request token is already in progress.")
                )
        response = None
        try:
            with STATE.lock:
                simulate, hold = STATE.config["simulate_conflicts"], STATE.config["hold_ms"]
            serial = None
            if simulate:
                serial, held = STATE.claim(items)
                if held:
                    STATE.count(op, "conflicts")
                    return self.reply(*cancelled(len(items), set(held)))
            # The items are claimed for `hold_ms` only, DynamoDB's window: not while the request
            # queues for moto, which applies one request at a time (a queue DynamoDB does not
            # have, and which would inflate the conflicts). moto's serial apply keeps it atomic.
            try:
                if hold:
                    time.sleep(hold / 1000)
            finally:
                if serial is not None:
                    STATE.release(serial, items)
            try:
                response = self.forward(body)
            except (http.client.HTTPException, OSError) as e:
                return self.reply(502, {"Content-Type": "text/plain"}, f"upstream: {e}".encode())
            STATE.count(op, "forwarded")
        finally:
            if token:
                ok = response is not None and response[0] == 200
                STATE.token_done(token, digest, response if ok else None)
        return self.after(op, kind, *response)

    def after(self, op, kind, status, headers, data):
        if kind == "drop":
            STATE.count(op, "faults", kind)
            return self.reset()
        if kind == "delay":
            STATE.count(op, "faults", kind)
            with STATE.lock:
                delay = STATE.config["delay_ms"]
            time.sleep(delay / 1000)
        try:
            self.reply(status, headers, data)
        except OSError:
            # The client gave up (its attempt timeout) while we waited.
            self.close_connection = True


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--upstream", required=True, help="moto's endpoint, e.g. http://127.0.0.1:5000")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args(argv)
    up = urllib.parse.urlsplit(args.upstream)
    server = Server((args.host, args.port), Handler)
    server.upstream_host, server.upstream_port = up.hostname, up.port or 80
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
