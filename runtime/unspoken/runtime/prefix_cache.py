"""A bounded LRU of prefilled content KV caches, so a content scored again with new criteria skips its prefill.

Keyed by the content segment's token ids (the exact ids the graph saw), bounded by bytes. Entries are private copies
of the graph's reused output buffers. Only content-first bundles use it; hits and misses are counted for monitoring.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

KV = list[tuple[np.ndarray, np.ndarray]]  # per layer (key, value), each [kv_heads, tokens, head_dim]


@dataclass(frozen=True)
class PrefixCacheInfo:
    """Counters of a ``PrefixCache`` (``Classifier.prefix_cache_info()``)."""

    hits: int
    misses: int
    entries: int
    bytes: int
    max_bytes: int


class PrefixCache:
    """Least-recently-used map from content ids to their KV, holding at most ``max_bytes`` of arrays."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._entries: OrderedDict[bytes, KV] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(content_ids: Sequence[int]) -> bytes:
        return np.asarray(content_ids, dtype=np.int64).tobytes()

    def get(self, key: bytes) -> KV | None:
        kv = self._entries.get(key)
        if kv is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return kv

    def put(self, key: bytes, kv: KV) -> None:
        """Store private copies of ``kv``; an entry larger than the whole cache is not stored."""
        size = sum(k.nbytes + v.nbytes for k, v in kv)
        if size > self.max_bytes or key in self._entries:
            return
        while self._bytes + size > self.max_bytes and self._entries:
            _, old = self._entries.popitem(last=False)
            self._bytes -= sum(k.nbytes + v.nbytes for k, v in old)
        self._entries[key] = [(np.array(k, copy=True), np.array(v, copy=True)) for k, v in kv]
        self._bytes += size

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0

    def info(self) -> PrefixCacheInfo:
        return PrefixCacheInfo(self.hits, self.misses, len(self._entries), self._bytes, self.max_bytes)
