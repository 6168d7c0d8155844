"""Ray: score a Ray Dataset with a pool of actors (one Classifier each), or run the HTTP service as a Ray Serve
deployment. Needs the ``ray`` extra (``pip install 'unspoken[ray]'``); nothing here imports ray until called.

Rows are the JSONL job's: ``content`` with ``criterion`` (a string) gets a ``probability`` column, ``content`` with
``criteria`` (a list) gets ``probabilities``; every other column passes through unchanged.

On a cluster, connect first (``ray.init("ray://head:10001")`` or ``ray.init(address="auto")`` on a node of it) and
give a bundle folder that every node can read at the same path (shared storage); each actor or replica loads it
once. The default bundle (``bundle_dir=None``) is built per node on first use, which needs the export extra there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError, MissingExtraError


def _require_ray():
    try:
        import ray
    except ImportError as e:
        raise MissingExtraError(f"this needs the ray extra ({e.name} is missing): pip install 'unspoken[ray]'") \
            from None
    return ray


class DatasetScorer:
    """The ``map_batches`` callable: loads a Classifier once per actor and scores numpy batches with
    ``Classifier.score_many``. Ray constructs it; use ``score_dataset``."""

    def __init__(self, bundle_dir: str | None, threads: int | None, content: str, criterion: str, criteria: str,
                 probability: str, probabilities: str) -> None:
        from .classifier import Classifier

        self.clf = Classifier(bundle_dir, threads=threads)
        self.content, self.criterion, self.criteria = content, criterion, criteria
        self.probability, self.probabilities = probability, probabilities

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        if self.content not in batch:
            raise InputError(f"the dataset has no {self.content!r} column")
        single = self.criterion in batch
        if single == (self.criteria in batch):
            raise InputError(f"the dataset needs exactly one of the columns {self.criterion!r} or {self.criteria!r}")
        contents = batch[self.content]
        if single:
            items = [(c, [k]) for c, k in zip(contents, batch[self.criterion])]
        else:
            items = [(c, k if isinstance(k, str) else list(k)) for c, k in zip(contents, batch[self.criteria])]
        try:
            scores = self.clf.score_many(items)
        except InputError as e:
            raise InputError(f"{e} (a row of this batch; ids: {_ids(batch)})", field=e.field) from None
        out = dict(batch)
        if single:
            out[self.probability] = np.asarray([s[0] for s in scores], dtype=np.float64)
        else:
            column = np.empty(len(scores), dtype=object)
            column[:] = [np.asarray(s, dtype=np.float64) for s in scores]
            out[self.probabilities] = column
        return out


def _ids(batch: dict[str, np.ndarray]) -> str:
    ids = batch.get("id")
    return "?" if ids is None else ", ".join(map(str, list(ids)[:5])) + (" ..." if len(ids) > 5 else "")


def score_dataset(
    dataset,
    bundle_dir: str | Path | None = None,
    *,
    actors: int = 2,
    batch_size: int = 64,
    threads: int | None = 1,
    num_cpus: float = 1.0,
    content_column: str = "content",
    criterion_column: str = "criterion",
    criteria_column: str = "criteria",
    probability_column: str = "probability",
    probabilities_column: str = "probabilities",
):
    """A lazy Ray Dataset with the scores added (see the module docstring for the columns).

    ``actors`` Classifier actors (each ``num_cpus`` CPUs, ``threads`` ONNX Runtime threads) score ``batch_size``
    rows per call. Row order within the result follows Ray Data's ordering rules (set
    ``DataContext.get_current().execution_options.preserve_order = True`` to keep the input order).
    """
    _require_ray()
    from ray.data import ActorPoolStrategy

    if actors < 1 or batch_size < 1:
        raise InputError("actors and batch_size must be at least 1")
    return dataset.map_batches(
        DatasetScorer,
        fn_constructor_kwargs={
            "bundle_dir": None if bundle_dir is None else str(bundle_dir), "threads": threads,
            "content": content_column, "criterion": criterion_column, "criteria": criteria_column,
            "probability": probability_column, "probabilities": probabilities_column,
        },
        batch_size=batch_size,
        batch_format="numpy",
        compute=ActorPoolStrategy(size=actors),
        num_cpus=num_cpus,
    )


def serve_deployment(config=None, *, num_replicas: int = 1, num_cpus: float = 1.0):
    """The HTTP service (same routes as ``unspoken serve``) as a bound Ray Serve application.

    >>> from ray import serve                                                          # doctest: +SKIP
    >>> serve.run(serve_deployment(ServeConfig(bundle=Path("/shared/bundle"))), route_prefix="/")

    Each replica loads the bundle before Ray counts it as started, and micro-batches its own requests; Ray Serve's
    proxy spreads requests over the replicas. ``config``'s host/port are ignored (Ray Serve's HTTP options decide).
    """
    _require_ray()
    from ray import serve

    from .serve.config import ServeConfig

    config = config or ServeConfig()

    def build_app():
        from unspoken.runtime.serve.app import create_app

        return create_app(config, wait_for_load=True)

    @serve.deployment(name="unspoken", num_replicas=num_replicas, ray_actor_options={"num_cpus": num_cpus})
    @serve.ingress(build_app)
    class UnspokenService:
        """One replica of the unspoken HTTP service."""

    return UnspokenService.bind()
