"""schemathesis hooks for scripts/schemathesis.sh (loaded through SCHEMATHESIS_HOOKS).

The one exclusion: `cargo lambda watch` (1.9.2) answers a request whose body or any header value
is not valid UTF-8 with its own plain-text 500, without calling the function at all. Such a
failure says nothing about the api, so it is dropped, and only when both hold: the request sent
non-UTF-8 bytes, and the answer is watch's own (text/plain, its fixed body, no request id). A 500
of the function (problem+json with a request_id) is never dropped. The function's own handling
of a non-UTF-8 body (API Gateway delivers it base64-encoded) is tested through the real handler.
"""

import json

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
