"""The head+calibrator graph: seed-token features in, calibrated probabilities out."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .manifest import HeadSpec
from .session import make_session


class HeadGraph:
    """``probabilities = head(features)`` where features are [n, hidden] float32."""

    def __init__(self, path: str | Path, spec: HeadSpec) -> None:
        self.spec = spec
        # The head is a few small matmuls; one thread avoids oversubscribing the backbone's pool.
        self.session = make_session(path, threads=1)

    def predict(self, features: np.ndarray) -> np.ndarray:
        features = np.ascontiguousarray(features, dtype=np.float32)
        (probs,) = self.session.run([self.spec.output], {self.spec.input: features})
        return np.asarray(probs, dtype=np.float64).reshape(-1)
