"""Run the service with uvicorn: one process, one event loop, one scoring thread (ONNX Runtime uses the cores).

SIGTERM or Ctrl-C stops accepting connections, lets in-flight requests finish (up to ``shutdown_timeout_s``), then
drains the queue. A bundle that fails to load stops the server with exit status 2 and one line on stderr.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from .app import create_app
from .config import ServeConfig

EXIT_LOAD_FAILED = 2


def run(config: ServeConfig) -> int:
    """Serve until stopped; returns the process exit status."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s", stream=sys.stderr)
    app = create_app(config)
    server = uvicorn.Server(uvicorn.Config(
        app, host=config.host, port=config.port, lifespan="on", access_log=config.access_log,
        timeout_graceful_shutdown=int(config.shutdown_timeout_s + 0.999), log_level="info",
    ))

    def stop() -> None:
        server.should_exit = True

    app.state.service.on_load_failure = stop
    server.run()
    return EXIT_LOAD_FAILED if app.state.service.load_error else 0


def write_openapi(path: str | Path) -> Path:
    """Write the service's OpenAPI schema (the one committed as docs/openapi.json)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(create_app(ServeConfig()).openapi(), indent=2, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    return path
