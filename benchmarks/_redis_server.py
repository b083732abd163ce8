"""A throwaway ``redis-server`` on a free loopback port, for the benchmark scripts.

(The test suite has its own fixture in ``tests/conftest.py``; scripts cannot import it.)
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def redis_server(*, must_start: bool = False) -> Iterator[str | None]:
    """Yield ``redis://127.0.0.1:PORT/0`` of a redis-server of our own, stopped on exit.

    Yields ``None`` when the ``redis-server`` binary or the redis client library is
    missing, and also when the server does not answer within 10 s, unless
    ``must_start``: then that raises ``RuntimeError``.
    """
    binary = shutil.which("redis-server")
    try:
        import redis
    except ImportError:
        binary = None
    if binary is None:
        yield None
        return
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="wxauth-bench-redis-") as workdir:
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", workdir]
        proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
        )
        url = f"redis://127.0.0.1:{port}/0"
        try:
            client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
            deadline = time.monotonic() + 10
            started = False
            while not started:
                try:
                    started = bool(client.ping())
                except redis.exceptions.ConnectionError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        break
                    time.sleep(0.02)
            client.close()
            if not started and must_start:
                raise RuntimeError("redis-server did not start")
            yield url if started else None
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
