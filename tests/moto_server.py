"""moto_server, handling one request at a time.

DynamoDB applies each request atomically: a conditional put or a TransactWriteItems either happens
as a whole, in isolation, or not at all. moto's threaded server does not isolate them: two
concurrent transactions can both pass a condition, and a cancelled one restores a snapshot of the
table that can erase another's write. Serialising the requests gives the local stack DynamoDB's
guarantees; clients still send concurrently.

Usage: .venv/bin/python tests/moto_server.py -H 127.0.0.1 -p PORT  (the same options as moto_server)
"""

import sys
import threading

import moto.server

_run_simple = moto.server.run_simple
_lock = threading.Lock()


def _serialised(app):
    def handle(environ, start_response):
        with _lock:
            # Consume the response inside the lock: moto builds it from backend state.
            return list(app(environ, start_response))

    return handle


def run_simple(host, port, app, **kwargs):
    return _run_simple(host, port, _serialised(app), **kwargs)


moto.server.run_simple = run_simple

if __name__ == "__main__":
    moto.server.main(sys.argv[1:])
