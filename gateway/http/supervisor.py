"""`wasmgate serve --workers N`: N gateway processes on one port, and the parent that keeps them.

Each worker opens its own listening socket on the port with SO_REUSEPORT, so the kernel
spreads connections over the workers' accept queues, and serves the app with uvicorn. The
socket is made with an explicit IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets whose
`proto` says TCP, and without it a keep-alive response waits ~40 ms for a delayed ACK.

The parent prepares the data dir once before starting them (gateway.services), restarts a
worker that dies (marking it dead for the metrics, gateway.metrics), and on SIGTERM or SIGINT
stops them all (each finishes its running calls).
Workers die with the parent (gateway.workers.die_with_parent), `kill -9` included.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import time

from prometheus_client.multiprocess import mark_process_dead

log = logging.getLogger("wasmgate.gateway")

_STOP_TIMEOUT_S = 35.0


def listening_socket(host: str, port: int, share: bool = True) -> socket.socket:
    """A TCP socket listening on host:port; `share` lets this serve's other workers listen too."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto or socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if share:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    sock.listen(2048)
    return sock


def port_taken(host: str, port: int) -> str | None:
    """Why host:port cannot be listened on (by anything, another serve's workers too), if so."""
    try:
        listening_socket(host, port, share=False).close()
    except OSError as error:
        return f"cannot listen on {host}:{port}: {error.strerror or error}"
    return None


def _worker(host: str, port: int) -> None:
    import uvicorn

    from gateway.http.app import create_worker_app
    from gateway.http.protocol import GatewayH11Protocol
    from gateway.settings import Settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sock = listening_socket(host, port)
    config = uvicorn.Config(
        create_worker_app, factory=True, http=GatewayH11Protocol, log_level="info",
        access_log=Settings().access_log, timeout_graceful_shutdown=30,
    )
    uvicorn.Server(config).run(sockets=[sock])


def run_workers(host: str, port: int, count: int) -> int:
    """Start `count` workers and keep them running until told to stop (check `port_taken` first)."""
    context = multiprocessing.get_context("spawn")
    stopping = False

    def stop(signum, frame) -> None:  # noqa: ANN001
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    workers = [_start(context, host, port) for _ in range(count)]
    log.info("wasmgate: %d worker processes on http://%s:%d", count, host, port)
    while not stopping:
        time.sleep(0.2)
        for i, worker in enumerate(workers):
            if not worker.is_alive() and not stopping:
                log.warning("worker process %d exited with %s; starting another", worker.pid, worker.exitcode)
                mark_process_dead(worker.pid)
                workers[i] = _start(context, host, port)
    for worker in workers:
        worker.terminate()  # SIGTERM: uvicorn finishes running requests, then the lifespan stops
    deadline = time.monotonic() + _STOP_TIMEOUT_S
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
        if worker.is_alive():
            worker.kill()
    return 0


def _start(context, host: str, port: int):  # noqa: ANN001, ANN202 - multiprocessing's types
    worker = context.Process(target=_worker, args=(host, port), name="wasmgate-worker")
    worker.start()
    return worker
