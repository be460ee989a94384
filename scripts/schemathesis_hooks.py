"""schemathesis hooks for scripts/schemathesis.sh (loaded through SCHEMATHESIS_HOOKS).

The one exclusion: `cargo lambda watch` (1.9.2) answers a request whose body or any header value
is not valid UTF-8 with its own plain-text 500, without calling the function at all. Such a
failure says nothing about the api, so it is dropped, and only when both hold: the request sent
non-UTF-8 bytes, and the answer is watch's own (text/plain, its fixed body, no request id). A 500
of the function (problem+json with a request_id) is never dropped. The function's own handling
of a non-UTF-8 body (API Gateway delivers it base64-encoded) is tested through the real handler.
"""

import json
import os

import schemathesis

# What watch answers, byte for byte in its JSON (cargo-lambda's error page).
WATCH_500 = {"type": "https://httpstatuses.com/500", "status": 500, "title": "Internal Server Error"}


def _not_utf8(raw) -> bool:
    if raw is None:
        return False
    if isinstance(raw, str):
        # http.client sends str header values as latin-1 bytes.
        try:
            raw = raw.encode("latin-1")
        except UnicodeEncodeError:
            return False
    try:
        bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _sent_non_utf8(request) -> bool:
    body = request.body
    if isinstance(body, str):
        body = None  # requests encodes a str body as UTF-8
    return _not_utf8(body) or any(_not_utf8(v) for v in request.headers.values())


def _is_watch_500(response) -> bool:
    if response.status_code != 500:
        return False
    ctype = ",".join(response.headers.get("content-type", []))
    if not ctype.startswith("text/plain"):
        return False
    try:
        return json.loads(response.content) == WATCH_500
    except ValueError:
        return False


@schemathesis.hook
def filter_failure(context, failure, case, response):
    """Keeps every failure but watch's own answer to non-UTF-8 bytes."""
    return not (_is_watch_500(response) and _sent_non_utf8(response.request))


@schemathesis.hook
def map_query(context, query):
    """Drops a generated `cursor`: a cursor is issued by the server and sealed with its key, so any
    value generated from the schema is a forgery, which the api rightly refuses with a 400 (and
    positive_data_acceptance would read that as valid data refused). Forged, tampered and
    other-tenant cursors are tested in tests/tests/api_edge.rs and tests/tests/bad_input.rs;
    schemathesis still follows real cursors the api returns through its links."""
    if query and "cursor" in query:
        query = {k: v for k, v in query.items() if k != "cursor"}
    return query


# The credential of this run (scripts/schemathesis.sh sets it): full, other or expired.
CREDENTIAL = os.environ.get("SCHEMATHESIS_CREDENTIAL", "")


def _secured(operation) -> bool:
    """The operation needs a credential: its own `security` or, absent, the document's, is a
    non-empty list without an empty (anonymous) requirement. /v1/health and /v1/openapi.json
    declare `security: []`."""
    raw = operation.definition.raw
    security = raw.get("security", operation.schema.raw_schema.get("security", []))
    return bool(security) and all(requirement for requirement in security)


def _router_refusal(response, case) -> bool:
    """The router's answers, given before any credential is looked at and the same for anyone: no
    such route (404 "No route ..."), a method the path does not have (405), or a path parameter it
    cannot decode (a 400 naming only path parameters)."""
    if response.status_code == 405:
        return True
    try:
        body = json.loads(response.content)
    except ValueError:
        return False
    if not isinstance(body, dict):
        return False
    if response.status_code == 404:
        return str(body.get("detail", "")).startswith("No route")
    if response.status_code == 400:
        names = {p.name for p in case.operation.path_parameters}
        fields = [e.get("field") for e in body.get("errors") or [] if isinstance(e, dict)]
        return bool(fields) and all(f in names for f in fields)
    return False


@schemathesis.check
def expired_credential_refused(ctx, response, case):
    """Run "expired": every answer of an operation that needs a credential is a 401, whatever the
    request (a 2xx, 403 or 404 would mean the expired key was looked at as if it still counted),
    but for the router's refusals, which come before any credential is read."""
    if CREDENTIAL != "expired" or not _secured(case.operation):
        return None
    # Another method on the path (unsupported_method's, or OPTIONS, a CORS preflight, which carries
    # no credential by design) is not this operation.
    if case.method.upper() != case.operation.method.upper():
        return None
    if response.status_code == 401 or _router_refusal(response, case):
        return None
    raise AssertionError(
        f"an expired key got {response.status_code} on {case.operation.label}, not 401"
    )
