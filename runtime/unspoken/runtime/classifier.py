"""Classifier: the one class users touch. Loads a bundle and turns (content, criteria) into probabilities."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from .errors import InputError
from .graph import BackboneGraph
from .head import HeadGraph
from .manifest import Manifest, load_manifest
from .prefix_cache import PrefixCache, PrefixCacheInfo
from .template import PromptTokenizer

DEFAULT_CHUNK = 16
PREFILL_TOKENS = 2048  # padded tokens per multi-content prefill pass (bounds its activations and KV buffers)
# Rows x (past + new) tokens per continuation pass. The graph needs each row's past as its own copy (ONNX attention
# does not broadcast batch), so without this bound 16 rows over a 1,024-token content held ~1 GB of KV buffers.
CONTINUATION_TOKENS = 4096
# A content longer than this is prefilled in slices of this many tokens, each continuing from the KV of the ones
# before: the attention scores of one pass are [heads, slice, past] instead of [heads, T, T] (a 4,000-token content
# in one pass peaked at 3.7 GB on SmolLM2).
PREFILL_SLICE = 512


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


@dataclass(frozen=True)
class Scores:
    """What ``Classifier.score_detailed`` returns.

    Attributes:
        probabilities: calibrated probabilities, one per criterion, in the order given.
        truncated: True when the content was cut to fit the backbone's context (only with ``truncate=True``).
        content_chars: characters in the content passed in.
        kept_chars: characters of it that were scored (its beginning); equals ``content_chars`` unless truncated.
        prompt_tokens: tokens in the longest prompt scored (content segment + longest criterion segment).
    """

    probabilities: list[float]
    truncated: bool
    content_chars: int
    kept_chars: int
    prompt_tokens: int


@dataclass(frozen=True)
class Prepared:
    """One checked and tokenized (content, criteria) item, as ``Classifier.prepare`` returns it.

    The content's ids are held once and shared by every criterion's prompt (never copied per criterion).

    Attributes:
        content: the content that is scored (its beginning, when truncated).
        content_ids: ids of the content's prompt segment.
        criterion_ids: ids of each criterion's prompt segment, in the order given.
        truncated: True when the content was cut to fit the backbone's context.
        content_chars: characters in the content passed in.
        prompt_tokens: tokens in the longest prompt of the item (content segment + longest criterion segment).
    """

    content: str
    content_ids: list[int]
    criterion_ids: list[list[int]]
    truncated: bool
    content_chars: int
    prompt_tokens: int

    @property
    def n(self) -> int:
        return len(self.criterion_ids)

    @property
    def kept_chars(self) -> int:
        return len(self.content)

    def prompt_ids(self, i: int, content_first: bool) -> list[int]:
        """The whole prompt of criterion ``i`` (a new list; build it only for the chunk being scored)."""
        if content_first:
            return self.content_ids + self.criterion_ids[i]
        return self.criterion_ids[i] + self.content_ids


def _scores(p: Prepared, probabilities: list[float]) -> Scores:
    return Scores(
        probabilities=probabilities,
        truncated=p.truncated,
        content_chars=p.content_chars,
        kept_chars=p.kept_chars,
        prompt_tokens=p.prompt_tokens,
    )


class Classifier:
    """Zero-shot classifier over one bundle.

    >>> clf = Classifier("path/to/bundle")                                  # doctest: +SKIP
    >>> clf.score("I used to hate it, now I love it.", ["The writer currently likes it.", "It is about cars."])
    ... # doctest: +SKIP
    [p_likes, p_cars]   # calibrated probabilities, one per criterion

    ``score_detailed`` also says whether over-long content was truncated (``truncate=True``); without it, content
    longer than the backbone's context raises InputError naming the token counts. ``score_many`` batches across
    items; ``prepare`` + ``score_prepared`` split checking/tokenizing from scoring (the HTTP service's batcher).

    Args:
        bundle_dir: a bundle folder written by ``unspoken export``; None builds/uses the default bundle.
        threads: ONNX Runtime intra-op threads (default: CPUs allowed by affinity and the container's quota).
        providers: ONNX Runtime execution providers (default CPU).
        session_options: an ``onnxruntime.SessionOptions`` to use as is.
        chunk_size: prompts scored per batched pass (criteria of one content, or of several contents); bounds
            memory for long criteria lists.
        verify_files: check every file's sha256 against the manifest at load.
        prefix_cache_mb: keep up to this many MiB of prefilled content KV in an LRU, so a content scored again
            (with new criteria) skips its prefill; 0 (default) keeps none. Content-first bundles only.
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
        prefix_cache_mb: float = 0,
    ) -> None:
        if bundle_dir is None:
            from .default_bundle import ensure_default_bundle

            bundle_dir = ensure_default_bundle()
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise InputError(f"chunk_size must be a whole number of at least 1, got {chunk_size!r}")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise InputError(f"threads must be a whole number of at least 1 (or None for all CPUs), got {threads!r}")
        if isinstance(prefix_cache_mb, bool) or not isinstance(prefix_cache_mb, (int, float)) or not (
                prefix_cache_mb >= 0):
            raise InputError(f"prefix_cache_mb must be a number of MiB ≥ 0 (0 = off), got {prefix_cache_mb!r}")
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
        self._prefix = PrefixCache(int(prefix_cache_mb * 2**20)) if prefix_cache_mb and self.template.cacheable \
            else None
        self._lock = threading.Lock()  # bound buffers and the prefix cache are shared state

    # -- public API ---------------------------------------------------------------------------------------------
    def score(self, content: str, criteria: Sequence[str] | str, *, truncate: bool = False) -> list[float]:
        """Calibrated probability that ``content`` meets each criterion, in the order given.

        Content too long for the backbone raises InputError naming the lengths; ``truncate=True`` instead keeps the
        longest beginning of the content that fits (see ``score_detailed``, which also says whether it was cut).
        """
        return self.score_detailed(content, criteria, truncate=truncate).probabilities

    def score_detailed(self, content: str, criteria: Sequence[str] | str, *, truncate: bool = False) -> Scores:
        """``score`` plus whether (and how much of) the content was truncated to fit."""
        prepared = self.prepare(content, criteria, truncate=truncate)
        (probs,) = self.score_prepared([prepared])
        return _scores(prepared, probs)

    def score_many(
        self, items: Sequence[tuple[str, Sequence[str] | str]], *, truncate: bool = False
    ) -> list[list[float]]:
        """``score`` over many (content, criteria) pairs, in as few graph passes as possible.

        Items with one criterion (every item, on a criterion-first bundle) share right-padded full passes, sorted by
        length to limit padding; items with several criteria on a content-first bundle prefill their contents
        together (right-padded, one pass per group of similar lengths) and run their criteria as continuations,
        rows of several contents per pass. Features equal ``score``'s up to float summation order (≤1e-5
        relative; padding changes matmul shapes). An unusable item raises InputError naming ``items[i]`` before
        anything runs; ``truncate`` as in ``score``.
        """
        return self.score_prepared(self._prepare_items(items, truncate))

    def score_many_detailed(
        self, items: Sequence[tuple[str, Sequence[str] | str]], *, truncate: bool = False
    ) -> list[Scores]:
        """``score_detailed`` over many (content, criteria) pairs, batched as ``score_many`` batches them."""
        prepared = self._prepare_items(items, truncate)
        return [_scores(p, probs) for p, probs in zip(prepared, self.score_prepared(prepared))]

    def prepare(self, content: str, criteria: Sequence[str] | str, *, truncate: bool = False) -> Prepared:
        """Check one (content, criteria) item, tokenize it and fit it into the backbone's context (or refuse).

        Raises InputError (with ``field`` set) for empty or non-string text, an empty criteria list, a criterion
        too long for any content, or content too long for the backbone unless ``truncate=True``, which keeps the
        longest beginning that fits (``Prepared.truncated`` says whether it was cut). ``score_prepared`` scores the
        result; splitting the two lets a caller reject bad items one by one before batching the good ones.
        """
        _check_text(content, "content")
        if isinstance(criteria, str):
            criteria = [criteria]
        if not isinstance(criteria, Sequence) or len(criteria) == 0:
            raise InputError("criteria must be a non-empty list of strings", field="criteria")
        for i, c in enumerate(criteria):
            _check_text(c, f"criteria[{i}]")
        t, tok = self.template, self.tokenizer
        limit = self.manifest.backbone.max_positions
        criterion_ids = tok.criterion_ids_many(t, criteria)
        widest = max(range(len(criterion_ids)), key=lambda i: len(criterion_ids[i]))
        longest = len(criterion_ids[widest])
        if longest >= limit:
            raise InputError(
                f"criteria[{widest}] alone makes a {longest}-token prompt segment; the backbone takes at most "
                f"{limit} tokens in all; shorten the criterion",
                field=f"criteria[{widest}]",
            )
        budget = limit - longest  # the content must leave room for the longest criterion of the call
        content_chars = len(content)
        if truncate:
            fitted = tok.fit_content(t, content, budget)
            if fitted is None:
                raise InputError(
                    f"the longest criterion segment takes {longest} of the backbone's {limit} tokens, leaving no "
                    "room for any content; shorten the criterion",
                    field=f"criteria[{widest}]",
                )
            content, content_ids, truncated = fitted
        else:
            content_ids = tok.content_ids(t, content)
            truncated = False
            if len(content_ids) > budget:
                raise InputError(
                    f"prompt is {len(content_ids) + longest} tokens (content segment {len(content_ids)}, longest "
                    f"criterion segment {longest}); the backbone takes at most {limit}; shorten the content or "
                    "pass truncate=True (CLI: --truncate) to keep its beginning",
                    field="content",
                )
        return Prepared(content, content_ids, criterion_ids, truncated, content_chars, len(content_ids) + longest)

    def score_prepared(self, prepared: Sequence[Prepared]) -> list[list[float]]:
        """Probabilities for items returned by ``prepare``, batched across items (see ``score_many``).

        The head runs chunk by chunk, so no more than a chunk's hidden states exist at once."""
        rows = sum(p.n for p in prepared)
        if rows == 0:
            return [[] for _ in prepared]
        probs = np.empty(rows, dtype=np.float64)
        with self._lock:
            for at, feats in self._iter_features(prepared):
                probs[at] = self.head.predict(feats)
        out, row = [], 0
        for p in prepared:
            out.append([float(x) for x in probs[row : row + p.n]])
            row += p.n
        return out

    def _prepare_items(self, items: Sequence[tuple[str, Sequence[str] | str]], truncate: bool) -> list[Prepared]:
        prepared = []
        for i, item in enumerate(items):
            try:
                if not isinstance(item, (tuple, list)) or len(item) != 2:
                    raise InputError("each item must be a (content, criteria) pair")
                prepared.append(self.prepare(item[0], item[1], truncate=truncate))
            except InputError as e:
                field = f"items[{i}]" + (f".{e.field}" if e.field else "")
                raise InputError(f"items[{i}]: {e}", field=field) from None
        return prepared

    def clear_prefix_cache(self) -> None:
        """Drop every cached content KV (the counters stay)."""
        with self._lock:
            if self._prefix:
                self._prefix.clear()

    def prefix_cache_info(self) -> PrefixCacheInfo | None:
        """Hits, misses, entries and bytes of the prefix cache; None when it is off. Read without waiting for a
        running call (a monitoring read may lag one call behind), so a metrics scrape never blocks on scoring."""
        prefix = self._prefix
        return prefix.info() if prefix else None

    # -- features -----------------------------------------------------------------------------------------------
    def features(
        self,
        content: str,
        criteria: Sequence[str] | str,
        *,
        use_cache: bool | None = None,
        truncate: bool = False,
    ) -> np.ndarray:
        """Seed-token hidden states [n, hidden]. ``use_cache=False`` forces one full pass per criterion;
        ``truncate`` as in ``score``."""
        prepared = self.prepare(content, criteria, truncate=truncate)
        if use_cache is None:
            use_cache = self.template.cacheable
        if use_cache and not self.template.cacheable:
            raise InputError("this bundle's template is criterion-first: its prompts cannot reuse a content cache")
        out = np.empty((prepared.n, self.graph.hidden_size), dtype=np.float32)
        with self._lock:
            for at, feats in self._iter_features([prepared], use_cache):
                out[at] = feats
        return out

    def _iter_features(
        self, prepared: Sequence[Prepared], use_cache: bool | None = None
    ) -> Iterator[tuple[slice | np.ndarray, np.ndarray]]:
        """Yield (rows, seed-token features of a chunk of prompts) until every criterion of every item is done.

        Rows count criteria item by item. Items with several criteria on a content-first bundle (any of its items
        when the prefix cache is on or the content is long; any item with ``use_cache=True``) prefill their contents
        once (several contents per pass, see ``_cached_groups``) and continue with chunks of criteria; the others'
        prompts share right-padded full passes, sorted by length. A prompt's ids are built only for the chunk that
        runs it, so memory is bounded by ``chunk_size``, not by the number of criteria.
        """
        content_first = self.template.cacheable
        singles: list[tuple[int, Prepared, int]] = []  # (row, item, criterion index)
        cached: list[tuple[int, Prepared]] = []  # (first row, item)
        row = 0
        for p in prepared:
            # One criterion: a full pass is cheaper than prefill + continuation, unless the prefix cache is on (the
            # content may be in it already, or be asked about again) or the content is long (sliced prefill).
            if (content_first and (p.n > 1 or self._prefix is not None or len(p.content_ids) > PREFILL_SLICE)
                    if use_cache is None else use_cache):
                cached.append((row, p))
            else:
                singles.extend((row + j, p, j) for j in range(p.n))
            row += p.n
        for group in self._cached_groups(cached):
            yield from self._features_cached(group)
        singles.sort(key=lambda s: len(s[1].content_ids) + len(s[1].criterion_ids[s[2]]))
        for start, feats in self._features_full(len(singles), lambda k: singles[k][1].prompt_ids(singles[k][2],
                                                                                                  content_first)):
            yield np.asarray([r for r, _, _ in singles[start : start + len(feats)]], dtype=np.int64), feats

    def _cached_groups(self, cached: list[tuple[int, Prepared]]) -> Iterator[list[tuple[int, Prepared]]]:
        """Items whose contents are prefilled together: similar lengths (sorted), at most ``chunk_size`` contents and
        ``PREFILL_TOKENS`` padded tokens, and, on sliding-window backbones, padded prompts that fit in the window
        (padding shifts the window; within it the result is exact). Schema-1 bundles do not record the window, so
        there every content is prefilled alone."""
        m = self.manifest
        window = m.backbone.sliding_window if m.schema_version >= 2 else 0
        group: list[tuple[int, Prepared]] = []
        tail = 0
        for item in sorted(cached, key=lambda rp: len(rp[1].content_ids)):
            width = len(item[1].content_ids)  # sorted: the newest item is the widest
            item_tail = max(len(t) for t in item[1].criterion_ids)
            if group and not (len(group) < self.chunk_size and width * (len(group) + 1) <= PREFILL_TOKENS
                              and (window is None or width + max(tail, item_tail) <= window)):
                yield group
                group, tail = [], 0
            group.append(item)
            tail = max(tail, item_tail)
        if group:
            yield group

    def _features_cached(self, group: list[tuple[int, Prepared]]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Prefill the group's contents (those not in the prefix cache) in one right-padded pass, then run every
        (content, criterion) row as a continuation, ``chunk_size`` rows per pass (fewer for long contents, so rows x
        tokens stays within ``CONTINUATION_TOKENS``). A row's past is its own content's
        KV, zero-padded to the widest content of the chunk and masked there; its positions continue from its own
        content's length, so each row computes what it would alone."""
        g = self.graph
        lens = [len(p.content_ids) for _, p in group]
        keys = [PrefixCache.key(p.content_ids) for _, p in group] if self._prefix else []
        sources: list[list | None] = [self._prefix.get(k) for k in keys] if self._prefix else [None] * len(group)
        misses = [i for i, src in enumerate(sources) if src is None]
        if len(misses) == 1 and lens[misses[0]] > PREFILL_SLICE:
            sources[misses[0]] = self._prefill_sliced(group[misses[0]][1].content_ids)
        elif misses:
            ids, mask, lengths = self._right_pad([group[i][1].content_ids for i in misses])
            b, s = ids.shape
            positions = np.broadcast_to(np.arange(s, dtype=np.int64), (b, s))
            _, presents = g.run(ids, mask, positions, g.empty_past(b), present_slot="prefill")
            for j, i in enumerate(misses):
                sources[i] = [(k[j, :, : lens[i]], v[j, :, : lens[i]]) for k, v in presents]  # views, no copy
        if self._prefix:
            for i in misses:
                self._prefix.put(keys[i], sources[i])
        rows = [(row + j, i, p.criterion_ids[j]) for i, (row, p) in enumerate(group) for j in range(p.n)]
        longest = max(lens) + max(len(t) for _, _, t in rows)
        per_pass = max(1, min(self.chunk_size, CONTINUATION_TOKENS // longest))
        for start in range(0, len(rows), per_pass):
            chunk = rows[start : start + per_pass]
            ids, mask, lengths = self._right_pad([t for _, _, t in chunk])
            b, s = ids.shape
            own = np.asarray([lens[i] for _, i, _ in chunk], dtype=np.int64)
            width = int(own.max())
            full_mask = np.zeros((b, width + s), dtype=np.int64)
            full_mask[:, :width] = np.arange(width)[None, :] < own[:, None]
            full_mask[:, width:] = mask
            positions = own[:, None] + np.arange(s, dtype=np.int64)[None, :]
            past = g.gather_past([sources[i] for _, i, _ in chunk], width)
            hidden, scratch = g.run(ids, full_mask, positions, past)
            seeds = hidden[np.arange(b), lengths - 1]  # a copy
            # Hold no view of the reused buffers between chunks: when a wider chunk makes one grow, the old one is
            # freed at once instead of living on beside the new one.
            del past, hidden, scratch
            yield np.asarray([r for r, _, _ in chunk], dtype=np.int64), seeds

    def _prefill_sliced(self, ids: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
        """One content's KV, prefilled ``PREFILL_SLICE`` tokens at a time as KV continuations (two buffer slots in
        turn, so a pass never writes the past it reads). Equal to one pass up to float summation order."""
        g = self.graph
        past, done, slot = g.empty_past(1), 0, 0
        while done < len(ids):
            end = min(len(ids), done + PREFILL_SLICE)
            x = np.asarray([ids[done:end]], dtype=np.int64)
            _, past = g.run(x, np.ones((1, end), dtype=np.int64), np.arange(done, end, dtype=np.int64)[None], past,
                            present_slot=f"prefill{slot}")
            done, slot = end, 1 - slot
        return [(k[0], v[0]) for k, v in past]

    def _features_full(self, n: int, prompt: Callable[[int], list[int]]) -> Iterator[tuple[int, np.ndarray]]:
        g = self.graph
        for start in range(0, n, self.chunk_size):
            chunk = [prompt(i) for i in range(start, min(n, start + self.chunk_size))]
            ids, mask, lengths = self._right_pad(chunk)
            b, s = ids.shape
            positions = np.broadcast_to(np.arange(s, dtype=np.int64), (b, s))
            hidden, scratch = g.run(ids, mask, positions, g.empty_past(b))
            seeds = hidden[np.arange(b), lengths - 1]  # a copy
            del hidden, scratch  # as above
            yield start, seeds

    def _right_pad(self, seqs: list[list[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lengths = np.asarray([len(s) for s in seqs], dtype=np.int64)
        width = int(lengths.max())
        ids = np.full((len(seqs), width), self.manifest.tokenizer.pad_id, dtype=np.int64)
        mask = np.zeros((len(seqs), width), dtype=np.int64)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = s
            mask[i, : len(s)] = 1
        return ids, mask, lengths
