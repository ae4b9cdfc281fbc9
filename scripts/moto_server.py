"""moto server with one request at a time.

moto's threaded server mutates DynamoDB items without locking, so two concurrent UpdateItem
ADDs (or TransactWriteItems) on one item can lose an update; in AWS each request is atomic.
Serializing requests gives the emulator the same per-request atomicity, which curfew's
counters and conditional writes rely on. Usage: moto_server.py HOST PORT
"""
import signal
import sys
import threading

from werkzeug.serving import run_simple

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def serialized(environ, start_response):
        with lock:
            return list(app(environ, start_response))

    run_simple(host, port, serialized, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
