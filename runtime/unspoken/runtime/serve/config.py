"""Settings of the HTTP service, checked once so a bad flag is one clear line instead of a failure under load."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError


@dataclass(frozen=True)
class ServeConfig:
    """Everything ``unspoken serve`` can be told; the defaults suit one CPU replica."""

    bundle: str | Path | None = None  # None: the default bundle (built on first use)
    threads: int | None = None  # ONNX Runtime intra-op threads
    host: str = "127.0.0.1"
    port: int = 8000
    max_batch: int = 16  # items scored in one batch at most (1 turns micro-batching off)
    max_wait_ms: float = 5.0  # how long the oldest queued item waits for others to join its batch
    max_queue: int = 256  # items waiting at most; more is answered 429 with Retry-After
    max_body_bytes: int = 1 << 20  # larger request bodies are answered 413
    shutdown_timeout_s: float = 30.0  # on SIGTERM/SIGINT, how long in-flight requests may take to finish
    access_log: bool = False
    prefix_cache_mb: float = 0  # MiB of prefilled content KV kept for contents scored again (0: off)

    def __post_init__(self) -> None:
        checks = [
            (self.max_batch >= 1, "--max-batch must be at least 1"),
            (self.prefix_cache_mb >= 0, "--prefix-cache-mb must be at least 0"),
            (self.max_wait_ms >= 0, "--max-wait-ms must not be negative"),
            (self.max_queue >= self.max_batch, "--max-queue must be at least --max-batch"),
            (self.max_body_bytes >= 1024, "--max-body-bytes must be at least 1024"),
            (0 <= self.port <= 65535, "--port must be between 0 and 65535"),
            (self.shutdown_timeout_s >= 0, "--shutdown-timeout must not be negative"),
            (self.threads is None or self.threads >= 1, "--threads must be at least 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(message)
