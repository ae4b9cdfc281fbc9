"""moto server with one request at a time.

moto's threaded server mutates DynamoDB items without locking, so two concurrent UpdateItem
ADDs (or TransactWriteItems) on one item can lose an update; in AWS each request is atomic.
Serializing requests gives the emulator the same per-request atomicity, which curfew's
counters and conditional writes rely on.

It also makes TransactWriteItems cost what the items it writes cost. moto 5.2 backs up the
whole table before every transaction item (`copy.deepcopy(self.tables[name])`, for the rollback
of a cancelled transaction), so each transaction's time and garbage grow with the table: at
1,000 targets (`make bench`) requests slowed to ~10/s and moto grew by ~2.5 MB per request,
past 9 GB before the first wave ended. Here the backup is of the items the transaction names,
restored the same way on any failure; a transaction writes only the items it names, so the
state after a cancelled transaction is the same as with moto's backup (streams aside: curfew's
table has none, and a cancelled write may leave its stream record here).
And it keeps a batched message's system attributes. moto 5.2's SendMessageBatch drops each
entry's MessageSystemAttributes (its SendMessage keeps them); SQS keeps `AWSTraceHeader` either
way, and curfew sends every task message in a batch with the router's trace header on it.

Usage: moto_server.py HOST PORT
       moto_server.py --zygote SOCKET

With --zygote it serves nothing itself: it imports moto and the services curfew calls once,
then listens on the Unix socket SOCKET, and for each line `HOST<TAB>PORT<TAB>LOG` it reads
there forks a server on HOST:PORT logging to LOG and answers with the server's process id.
A test suite whose every test process starts an emulator of its own (`make test`, through
scripts/with-moto-zygote.sh) saves each one the three seconds of CPU a fresh moto takes to
import itself and its services: a forked server is up in about 0.2 s (1.2 s afresh) and answers
its first Auto Scaling call in 0.4 s (2.2 s afresh).
A forked server is a fresh moto all the same: no request reached the zygote.
"""
import copy
import gc
import os
import signal
import socket
import sys
import threading
import types

from werkzeug.serving import run_simple

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)


def _back_up_named_items_only() -> None:
    import moto.dynamodb.models as dynamodb
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table

    # moto's transact_write_items reaches `copy` through its module: hand it one whose deepcopy
    # of a Table is the table itself (so its backup and "rollback" are no-ops), and of anything
    # else (update_item's copy of one item) a real deep copy.
    shim = types.ModuleType("copy")
    shim.__dict__.update(copy.__dict__)
    shim.deepcopy = lambda x, memo=None: x if isinstance(x, Table) else copy.deepcopy(x, memo)
    dynamodb.copy = shim
    transact = dynamodb.DynamoDBBackend.transact_write_items

    def transact_write_items(self, transact_items):
        backups = []
        for entry in transact_items:
            try:
                _, op = next(iter(entry.items()))
                table = self.tables[op["TableName"]]
                key = op["Item"] if "Item" in op else op["Key"]
                hash_key = DynamoType(key[table.hash_key_attr])
                range_key = (
                    DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
                )
            except (KeyError, TypeError, StopIteration, AttributeError):
                continue  # an item moto refuses before writing anything
            current = table.get_item(hash_key, range_key)
            backups.append((table, hash_key, range_key, copy.deepcopy(current)))
        try:
            return transact(self, transact_items)
        except Exception:
            for table, hash_key, range_key, item in reversed(backups):
                items = table.items[hash_key] if range_key is not None else table.items
                slot = range_key if range_key is not None else hash_key
                if item is None:
                    items.pop(slot, None)
                else:
                    items[slot] = item
            raise

    dynamodb.DynamoDBBackend.transact_write_items = transact_write_items


def _keep_batched_system_attributes() -> None:
    import moto.sqs.models as sqs

    send_message = sqs.SQSBackend.send_message
    send_batch = sqs.SQSBackend.send_message_batch

    def send_message_batch(self, queue_name, entries):
        # moto's batch calls send_message once per entry, in order: hand each call its entry's
        # system attributes, as SendMessage's own handler would.
        pending = [e.get("MessageSystemAttributes") for e in entries.values()]

        def with_attributes(backend, *args, **kwargs):
            attributes = pending.pop(0) if pending else None
            if attributes and "system_attributes" not in kwargs:
                kwargs["system_attributes"] = attributes
            return send_message(backend, *args, **kwargs)

        self.send_message = types.MethodType(with_attributes, self)
        try:
            return send_batch(self, queue_name, entries)
        finally:
            del self.send_message

    sqs.SQSBackend.send_message_batch = send_message_batch


# The services curfew calls, imported by the zygote before it forks any server.
SERVICES = (
    "autoscaling",
    "dynamodb",
    "ec2",
    "eks",
    "lambda",
    "secretsmanager",
    "sns",
    "sqs",
    "sts",
)


def serve(host: str, port: int) -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def serialized(environ, start_response):
        with lock:
            return list(app(environ, start_response))

    run_simple(host, port, serialized, threaded=True, request_handler=MotoRequestHandler)


def zygote(path: str) -> None:
    # Python's advice for a fork server: no collection in the parent while it loads, then every
    # object it made frozen out of the collector, so a forked server's collections never walk
    # (and copy) the inherited heap: without it a forked server answered about a quarter slower.
    gc.disable()
    from moto.backends import get_backend

    for service in SERVICES:
        backends = get_backend(service)
        # One region's backend made once warms what every later one reads from moto's data
        # files (EC2's instance types and images, behind each Auto Scaling backend). A
        # service with no such region (a global one) is only imported.
        try:
            backends["000000000000"]["eu-west-1"]
        except KeyError:
            pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # Bound under another name and renamed once listening: whoever waits for the socket to
    # appear (a test, `with-moto-zygote.sh`) never connects between the bind and the listen,
    # which refused the connection.
    bound = f"{path}.{os.getpid()}"
    listener.bind(bound)
    listener.listen(64)
    os.rename(bound, path)
    # The servers are reaped as they end: none lingers as a zombie a `kill -0` would still find.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    gc.freeze()
    print(f"moto zygote on {path}", flush=True)
    while True:
        conn, _ = listener.accept()
        with conn:
            try:
                host, port, log = conn.makefile("r").readline().rstrip("\n").split("\t")
                port = int(port)
            except ValueError as e:
                conn.sendall(f"error: {e}\n".encode())
                continue
            pid = os.fork()
            if pid == 0:
                try:
                    listener.close()
                    conn.close()
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    gc.enable()
                    # Its own process group, as a server started on its own has.
                    os.setpgid(0, 0)
                    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                    os.dup2(out, 1)
                    os.dup2(out, 2)
                    os.close(out)
                    null = os.open(os.devnull, os.O_RDONLY)
                    os.dup2(null, 0)
                    os.close(null)
                    serve(host, port)
                finally:
                    os._exit(0)
            conn.sendall(f"{pid}\n".encode())


def main() -> None:
    _back_up_named_items_only()
    _keep_batched_system_attributes()
    if sys.argv[1] == "--zygote":
        zygote(sys.argv[2])
    else:
        serve(sys.argv[1], int(sys.argv[2]))


if __name__ == "__main__":
    main()
