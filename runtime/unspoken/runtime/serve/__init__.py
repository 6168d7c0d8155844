"""The HTTP service (``unspoken serve``): FastAPI + uvicorn in front of one Classifier, with micro-batching across
concurrent requests, a bounded queue (429 when full), Prometheus metrics and readiness once the bundle is loaded.

Only ``config`` and ``batcher`` import without the ``serve`` extra; ``app`` and ``server`` need fastapi, uvicorn
and prometheus_client (``pip install 'unspoken[serve]'``). Nothing here imports torch.
"""

from .config import ServeConfig

__all__ = ["ServeConfig"]
