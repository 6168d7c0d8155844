"""Classifier: the one class users touch. Loads a bundle and turns (content, criteria) into probabilities."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import InputError
from .graph import BackboneGraph
from .head import HeadGraph
from .manifest import Manifest, load_manifest
from .template import PromptTokenizer

DEFAULT_CHUNK = 16

Prompt = tuple[list[int], list[int]]  # (first segment ids, second segment ids) of one prompt


def _check_text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise InputError(f"{what} must be a string, got {type(value).__name__}", field=what)
    if not value.strip():
        raise InputError(f"{what} is empty", field=what)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:  # lone surrogates (e.g. from JSON "\ud800") cannot be tokenized
        raise InputError(
            f"{what} holds a lone surrogate at index {e.start}; it is not valid Unicode text", field=what
        ) from None
    return value


class Classifier:
    """Zero-shot classifier over one bundle.

    >>> clf = Classifier("path/to/bundle")                                  # doctest: +SKIP
    >>> clf.score("I used to hate it, now I love it.", ["The writer currently likes it.", "It is about cars."])
    ... # doctest: +SKIP
    [p_likes, p_cars]   # calibrated probabilities, one per criterion

    Args:
        bundle_dir: a bundle folder written by ``unspoken export``; None builds/uses the default bundle.
        threads: ONNX Runtime intra-op threads (default: CPUs allowed by affinity and the container's quota).
        providers: ONNX Runtime execution providers (default CPU).
        session_options: an ``onnxruntime.SessionOptions`` to use as is.
        chunk_size: criteria scored per batched pass; bounds memory for long criteria lists.
        verify_files: check every file's sha256 against the manifest at load.
    """

    def __init__(
        self,
        bundle_dir: str | Path | None = None,
        *,
        threads: int | None = None,
        providers: Sequence[str] | None = None,
        session_options=None,
        chunk_size: int = DEFAULT_CHUNK,
        verify_files: bool = True,
    ) -> None:
        if bundle_dir is None:
            from .default_bundle import ensure_default_bundle

            bundle_dir = ensure_default_bundle()
        if chunk_size < 1:
            raise InputError("chunk_size must be at least 1")
        self.bundle_dir = Path(bundle_dir)
        self.manifest: Manifest
        self.manifest, self.load_report = load_manifest(self.bundle_dir, verify_files=verify_files)
        m = self.manifest
        self.template = m.template
        self.tokenizer = PromptTokenizer(self.bundle_dir / m.tokenizer.file, m.tokenizer.prepend_ids)
        self.graph = BackboneGraph(
            self.bundle_dir / m.graph.file, m.graph, m.backbone,
            threads=threads, providers=providers, session_options=session_options,
        )
        self.head = HeadGraph(self.bundle_dir / m.head.file, m.head)
        self.chunk_size = chunk_size
        self._lock = threading.Lock()  # bound buffers are shared state

    # -- public API ---------------------------------------------------------------------------------------------
    def score(self, content: str, criteria: Sequence[str] | str) -> list[float]:
        """Calibrated probability that ``content`` meets each criterion, in the order given."""
        features = self.features(content, criteria)
        return [float(p) for p in self.head.predict(features)]

    def score_many(self, items: Sequence[tuple[str, Sequence[str] | str]]) -> list[list[float]]:
        """``score`` over many (content, criteria) pairs, in as few graph passes as possible.

        Items with one criterion (every item, on a criterion-first bundle) share right-padded full passes, sorted by
        length to limit padding; an item with several criteria on a content-first bundle prefills its content once,
        as ``score`` does. Scores equal ``score``'s (to 1e-6, like the cached and full paths). An unusable item
        raises InputError naming ``items[i]`` before anything runs.
        """
        prepared = []
        for i, item in enumerate(items):
            try:
                if not isinstance(item, (tuple, list)) or len(item) != 2:
                    raise InputError("each item must be a (content, criteria) pair")
                prepared.append(self.prepare(item[0], item[1]))
            except InputError as e:
                field = f"items[{i}]" + (f".{e.field}" if e.field else "")
                raise InputError(f"items[{i}]: {e}", field=field) from None
        return self.score_prepared(prepared)

    def prepare(self, content: str, criteria: Sequence[str] | str) -> list[Prompt]:
        """Check one (content, criteria) item and tokenize it: one (first segment, second segment) per criterion.

        Raises InputError for empty or non-string text, an empty criteria list, or a prompt longer than the
        backbone takes. ``score_prepared`` scores the result; splitting the two lets a caller reject bad items one
        by one before batching the good ones.
        """
        _check_text(content, "content")
        if isinstance(criteria, str):
            criteria = [criteria]
        if not isinstance(criteria, Sequence) or len(criteria) == 0:
            raise InputError("criteria must be a non-empty list of strings", field="criteria")
        for i, c in enumerate(criteria):
            _check_text(c, f"criteria[{i}]")
        heads_tails = self.tokenizer.prompt_ids_many(self.template, content, criteria)
        limit = self.manifest.backbone.max_positions
        longest = max(len(h) + len(t) for h, t in heads_tails)
        if longest > limit:
            raise InputError(f"prompt is {longest} tokens; the backbone takes at most {limit}", field="content")
        return heads_tails

    def score_prepared(self, prepared: Sequence[list[Prompt]]) -> list[list[float]]:
        """Probabilities for items returned by ``prepare``, batched across items (see ``score_many``)."""
        rows = sum(len(p) for p in prepared)
        if rows == 0:
            return []
        features = np.empty((rows, self.graph.hidden_size), dtype=np.float32)
        singles: list[tuple[int, list[int]]] = []  # (row in features, full prompt ids)
        row = 0
        with self._lock:
            for heads_tails in prepared:
                if self.template.cacheable and len(heads_tails) > 1:
                    features[row : row + len(heads_tails)] = self._features_cached(
                        heads_tails[0][0], [t for _, t in heads_tails]
                    )
                else:
                    singles.extend((row + j, h + t) for j, (h, t) in enumerate(heads_tails))
                row += len(heads_tails)
            singles.sort(key=lambda s: len(s[1]))
            if singles:
                features[[r for r, _ in singles]] = self._features_full([ids for _, ids in singles])
        probs = self.head.predict(features)
        out, row = [], 0
        for heads_tails in prepared:
            out.append([float(p) for p in probs[row : row + len(heads_tails)]])
            row += len(heads_tails)
        return out

    # -- features -----------------------------------------------------------------------------------------------
    def features(self, content: str, criteria: Sequence[str] | str, *, use_cache: bool | None = None) -> np.ndarray:
        """Seed-token hidden states [n, hidden]. ``use_cache=False`` forces one full pass per criterion."""
        heads_tails = self.prepare(content, criteria)
        if use_cache is None:
            use_cache = self.template.cacheable
        if use_cache and not self.template.cacheable:
            raise InputError("this bundle's template is criterion-first: its prompts cannot reuse a content cache")
        with self._lock:
            if use_cache:
                return self._features_cached(heads_tails[0][0], [t for _, t in heads_tails])
            return self._features_full([h + t for h, t in heads_tails])

    def _features_cached(self, head_ids: list[int], tails: list[list[int]]) -> np.ndarray:
        g = self.graph
        n_head = len(head_ids)
        ids = np.asarray([head_ids], dtype=np.int64)
        _, presents = g.run(
            ids, np.ones_like(ids), np.arange(n_head, dtype=np.int64)[None], g.empty_past(1), present_slot="prefill"
        )
        out = np.empty((len(tails), g.hidden_size), dtype=np.float32)
        for start in range(0, len(tails), self.chunk_size):
            chunk = tails[start : start + self.chunk_size]
            ids, mask, lengths = self._right_pad(chunk)
            b, s = ids.shape
            full_mask = np.concatenate([np.ones((b, n_head), dtype=np.int64), mask], axis=1)
            positions = np.broadcast_to(np.arange(n_head, n_head + s, dtype=np.int64), (b, s))
            past = g.expand_past(presents, b)
            hidden, _ = g.run(ids, full_mask, positions, past)
            out[start : start + b] = hidden[np.arange(b), lengths - 1]
        return out

    def _features_full(self, prompts: list[list[int]]) -> np.ndarray:
        g = self.graph
        out = np.empty((len(prompts), g.hidden_size), dtype=np.float32)
        for start in range(0, len(prompts), self.chunk_size):
            chunk = prompts[start : start + self.chunk_size]
            ids, mask, lengths = self._right_pad(chunk)
            b, s = ids.shape
            positions = np.broadcast_to(np.arange(s, dtype=np.int64), (b, s))
            hidden, _ = g.run(ids, mask, positions, g.empty_past(b))
            out[start : start + b] = hidden[np.arange(b), lengths - 1]
        return out

    def _right_pad(self, seqs: list[list[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lengths = np.asarray([len(s) for s in seqs], dtype=np.int64)
        width = int(lengths.max())
        ids = np.full((len(seqs), width), self.manifest.tokenizer.pad_id, dtype=np.int64)
        mask = np.zeros((len(seqs), width), dtype=np.int64)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = s
            mask[i, : len(s)] = 1
        return ids, mask, lengths
