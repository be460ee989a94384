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
from moto.dynamodb.models.dynamo_type import DynamoType
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


class _NoTableCopy:
    """The `copy` module as moto.dynamodb.models sees it during TransactWriteItems.

    moto backs up a table before a transaction by deep-copying it, stream records included, and
    restores the copy if the transaction is cancelled. That costs time and memory in proportion to
    everything the table ever held (a few thousand decisions took seconds per transaction and
    gigabytes). Here the "copy" is the table itself, and `transact_write_items` below restores
    only the items the transaction touches, which is the same thing while requests are
    serialised.
    """

    def deepcopy(self, obj, memo=None):
        if isinstance(obj, Table):
            return obj
        return copy.deepcopy(obj, memo)

    def __getattr__(self, name):
        return getattr(copy, name)


def _touched(backend, transact_items):
    """(table, hash, range, a copy of the item or None) for each item of the transaction."""
    out = []
    for entry in transact_items:
        _, op = next(iter(entry.items()))
        table = backend.tables.get(op.get("TableName"))
        if table is None:
            continue
        attrs = op.get("Key") or op.get("Item") or {}
        if table.hash_key_attr not in attrs:
            continue
        h = DynamoType(attrs[table.hash_key_attr])
        r = None
        if table.range_key_attr is not None:
            if table.range_key_attr not in attrs:
                continue
            r = DynamoType(attrs[table.range_key_attr])
        out.append((table, h, r, copy.deepcopy(table.get_item(h, r))))
    return out


def _restore(touched, streams):
    for table, h, r, item in reversed(touched):
        if r is None:
            if item is None:
                table.items.pop(h, None)
            else:
                table.items[h] = item
        elif item is None:
            table.items.get(h, {}).pop(r, None)
        else:
            table.items[h][r] = item
    for shard, n in streams:
        del shard.items[n:]


_transact_write_items = DynamoDBBackend.transact_write_items


def transact_write_items(self, transact_items):
    # Safe to swap a module global and patch items here: requests are serialised by _lock above.
    touched = _touched(self, transact_items)
    streams = [(t.stream_shard, len(t.stream_shard.items)) for t in {id(t[0]): t[0] for t in touched}.values() if t.stream_shard]
    dynamodb_models.copy = _NoTableCopy()
    try:
        return _transact_write_items(self, transact_items)
    except Exception:
        _restore(touched, streams)
        raise
    finally:
        dynamodb_models.copy = copy


DynamoDBBackend.transact_write_items = transact_write_items

if __name__ == "__main__":
    moto.server.main(sys.argv[1:])
