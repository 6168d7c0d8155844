"""Measure a running service: start ``unspoken serve`` as a child process and send it a fixed number of requests
from concurrent keep-alive clients (standard library only, so the numbers are the server's, not a client's).

Used by ``tests/test_serve.py`` and ``benchmarks/serve_load.py``.
"""

from __future__ import annotations

import http.client
import itertools
import json
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence
from urllib.parse import urlsplit


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url: str, method: str = "GET", path: str = "/", body: object = None, *, raw: bytes | None = None,
         headers: dict | None = None, timeout: float = 30.0) -> tuple[int, dict, bytes]:
    """One request on a fresh connection: (status, lower-cased headers, body bytes)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        hdrs = {"Content-Type": "application/json"} if data is not None else {}
        hdrs.update(headers or {})
        conn.request(method, path, body=data, headers=hdrs)
        res = conn.getresponse()
        return res.status, {k.lower(): v for k, v in res.getheaders()}, res.read()
    finally:
        conn.close()


class ServerProcess:
    """``unspoken serve`` on 127.0.0.1 and a free port, as a context manager that waits until it is ready.

    >>> with ServerProcess(["--bundle", "b", "--max-batch", "8"]) as srv:    # doctest: +SKIP
    ...     call(srv.url, "POST", "/v1/score", {"content": "hi", "criteria": ["greets"]})
    """

    def __init__(self, args: Sequence[str], *, ready_timeout: float = 120.0, env: dict | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = ["--host", "127.0.0.1", "--port", str(self.port), *args]
        self.ready_timeout = ready_timeout
        self.env = env
        self.log = Path(tempfile.mkstemp(prefix="unspoken-serve-", suffix=".log")[1])
        self.proc: subprocess.Popen | None = None

    def start(self, wait_ready: bool = True) -> "ServerProcess":
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "unspoken.runtime.cli", "serve", *self.args],
                                         stdout=log, stderr=subprocess.STDOUT, env=self.env)
        if wait_ready:
            self.wait_ready()
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if call(self.url, "GET", "/readyz", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"the server was not ready within {self.ready_timeout} s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Signal the server and wait for it; returns its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.stop()
        self.log.unlink(missing_ok=True)


@dataclass
class LoadResult:
    """What a bounded load run saw."""

    requests: int
    seconds: float
    statuses: Counter = field(default_factory=Counter)  # HTTP status (or "error", ...) -> count
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests

    @property
    def throughput(self) -> float:
        """Successful requests per second."""
        return self.statuses.get(200, 0) / self.seconds

    def summary(self) -> dict:
        lat = sorted(self.latencies) or [float("nan")]
        pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1e3  # noqa: E731
        return {"requests": self.requests, "seconds": round(self.seconds, 3),
                "throughput_rps": round(self.throughput, 1), "p50_ms": round(pick(0.5), 2),
                "p95_ms": round(pick(0.95), 2), "statuses": {str(k): v for k, v in sorted(self.statuses.items(),
                                                                                          key=str)}}


def run_load(url: str, payloads: Sequence[dict], *, concurrency: int, path: str = "/v1/score",
             timeout: float = 60.0) -> LoadResult:
    """Send every payload once, ``concurrency`` at a time over keep-alive connections; stops by itself."""
    parts = urlsplit(url)
    bodies = [json.dumps(p).encode() for p in payloads]
    order = itertools.count()
    result = LoadResult(requests=len(bodies), seconds=0.0)
    lock = threading.Lock()

    def client() -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        while (i := next(order)) < len(bodies):
            t0 = time.perf_counter()
            try:
                conn.request("POST", path, body=bodies[i], headers={"Content-Type": "application/json"})
                res = conn.getresponse()
                res.read()
                status: int | str = res.status
                if status == 429 and not res.getheader("retry-after"):
                    status = "429 without Retry-After"
                if res.getheader("connection", "").lower() == "close":
                    conn.close()
            except (OSError, http.client.HTTPException):
                status = "error"
                conn.close()
            elapsed = time.perf_counter() - t0
            with lock:
                result.statuses[status] += 1
                if status == 200:
                    result.latencies.append(elapsed)
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result.seconds = time.perf_counter() - start
    return result


def metric_value(text: str, name: str, labels: str = "") -> float:
    """A sample's value from Prometheus text (``labels`` as written there, e.g. ``le="1.0"``); 0 if absent."""
    want = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(want + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0

