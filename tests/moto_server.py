"""moto_server, handling one request at a time.

DynamoDB applies each request atomically: a conditional put or a TransactWriteItems either happens
as a whole, in isolation, or not at all. moto's threaded server does not isolate them: two
concurrent transactions can both pass a condition, and a cancelled one restores a snapshot of the
table that can erase another's write. Serialising the requests gives the local stack DynamoDB's
guarantees; clients still send concurrently.

Usage: .venv/bin/python tests/moto_server.py -H 127.0.0.1 -p PORT  (the same options as moto_server)
"""

import copy
import sys
import threading

import moto.dynamodb.models as dynamodb_models
import moto.server
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table

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


class _EachTableOnce:
    """The `copy` module as moto.dynamodb.models sees it during TransactWriteItems.

    moto backs up a table before a transaction by deep-copying it once per item of the
    transaction, before any item is applied, and restores the last copy if the transaction is
    cancelled. The copies are identical, so one per table serves; each costs time in proportion to
    the table's size, which made every decision (three items) slower as a local table grew.
    """

    def __init__(self):
        self._tables = {}

    def deepcopy(self, obj, memo=None):
        if isinstance(obj, Table):
            if id(obj) not in self._tables:
                self._tables[id(obj)] = copy.deepcopy(obj)
            return self._tables[id(obj)]
        return copy.deepcopy(obj, memo)

    def __getattr__(self, name):
        return getattr(copy, name)


_transact_write_items = DynamoDBBackend.transact_write_items


def transact_write_items(self, transact_items):
    # Safe to swap a module global here: requests are serialised by _lock above.
    dynamodb_models.copy = _EachTableOnce()
    try:
        return _transact_write_items(self, transact_items)
    finally:
        dynamodb_models.copy = copy


DynamoDBBackend.transact_write_items = transact_write_items

if __name__ == "__main__":
    moto.server.main(sys.argv[1:])
