"""Quality metrics on held-out rows: AUROC, accuracy at 0.5, ECE (15 equal-width bins), Brier."""

from __future__ import annotations

import numpy as np


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve via average ranks (ties count half); NaN when one class is absent."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def ece(labels: np.ndarray, probs: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error over equal-width probability bins."""
    labels = np.asarray(labels, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    idx = np.minimum((probs * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            total += sel.sum() * abs(probs[sel].mean() - labels[sel].mean())
    return float(total / max(len(probs), 1))


def brier(labels: np.ndarray, probs: np.ndarray) -> float:
    return float(np.mean((np.asarray(probs, dtype=np.float64) - np.asarray(labels, dtype=np.float64)) ** 2))


def accuracy(labels: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> float:
    return float(np.mean((np.asarray(probs) >= threshold) == np.asarray(labels).astype(bool)))


def summary(labels, probs) -> dict:
    """All four metrics plus the row count and positive rate."""
    labels = np.asarray(labels)
    return {
        "n": int(len(labels)),
        "positive_rate": float(np.mean(labels)) if len(labels) else float("nan"),
        "auroc": auroc(labels, probs),
        "accuracy": accuracy(labels, probs),
        "ece": ece(labels, probs),
        "brier": brier(labels, probs),
    }
