"""Prompt templates as data, and the one tokenization both export and runtime use.

A prompt is two token segments. For ``content-first`` the first segment holds the content and the second holds the
criterion and the seed cue, so the content can be prefilled once and every criterion scored as a short continuation.
For ``criterion-first`` the criterion comes first, so every content token attends to it.
Each segment is tokenized on its own and the ids are concatenated: the cached path and the long path see exactly the
same ids, and the head is trained on exactly the ids the runtime feeds the graph.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from .errors import BundleError

ORDERS = ("content-first", "criterion-first")
DEFAULT_SEED_CUE = "Assessment:"


@dataclass(frozen=True)
class PromptTemplate:
    """The literal text around the two slots.

    Rendered text is ``prefix + FIRST + middle + SECOND + suffix + seed_cue`` where FIRST/SECOND are content/criterion
    (content-first) or criterion/content (criterion-first).
    """

    order: str
    prefix: str
    middle: str
    suffix: str
    seed_cue: str = DEFAULT_SEED_CUE
    name: str = "default"
    version: int = 1

    def __post_init__(self) -> None:
        if self.order not in ORDERS:
            raise ValueError(f"template order {self.order!r} is not known; available: {', '.join(ORDERS)}")
        if not self.seed_cue.strip():
            raise ValueError("template seed_cue must not be empty")

    @property
    def cacheable(self) -> bool:
        """True when the first segment depends on the content alone (prefill once, score many criteria)."""
        return self.order == "content-first"

    def segments(self, content: str, criterion: str) -> tuple[str, str]:
        """The two texts that are tokenized separately."""
        first, second = (content, criterion) if self.cacheable else (criterion, content)
        return self._first(first), self._second(second)

    def content_segment(self, content: str) -> str:
        """The one of the two segments that holds the content."""
        return self._first(content) if self.cacheable else self._second(content)

    def criterion_segment(self, criterion: str) -> str:
        """The one of the two segments that holds the criterion."""
        return self._second(criterion) if self.cacheable else self._first(criterion)

    def _first(self, text: str) -> str:
        return self.prefix + text

    def _second(self, text: str) -> str:
        return self.middle + text + self.suffix + self.seed_cue

    def render(self, content: str, criterion: str) -> str:
        """The whole prompt as one string (for reading and for the LoRA data, not for tokenizing)."""
        return "".join(self.segments(content, criterion))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "PromptTemplate":
        known = {k: data[k] for k in ("order", "prefix", "middle", "suffix", "seed_cue", "name", "version") if k in data}
        return cls(**known)

    @property
    def sha256(self) -> str:
        """Hash of every field that changes the ids; a head is bound to it."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def default_template(order: str = "content-first", seed_cue: str = DEFAULT_SEED_CUE) -> PromptTemplate:
    """The project's default wording for either order."""
    question = "\nDoes the text meet the criterion?\n"
    if order == "content-first":
        return PromptTemplate(order, prefix="Text: ", middle="\n\nCriterion: ", suffix=question, seed_cue=seed_cue)
    if order == "criterion-first":
        return PromptTemplate(order, prefix="Criterion: ", middle="\n\nText: ", suffix=question, seed_cue=seed_cue)
    raise ValueError(f"template order {order!r} is not known; available: {', '.join(ORDERS)}")


class PromptTokenizer:
    """Turns (content, criterion) into the two id segments, with `tokenizers` only (no transformers)."""

    def __init__(self, tokenizer_file: str | Path, prepend_ids: Sequence[int] = ()) -> None:
        from tokenizers import Tokenizer

        try:
            self._tok = Tokenizer.from_file(str(tokenizer_file))
        except Exception as e:  # tokenizers raises its own Exception type for unreadable files
            raise BundleError(f"cannot read tokenizer {tokenizer_file}: {e}") from e
        self.prepend_ids = list(prepend_ids)

    def encode(self, text: str) -> list[int]:
        """Ids of one text segment, without special tokens."""
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_many(self, texts: Sequence[str], batch: int = 256) -> list[list[int]]:
        """Ids of many segments; encoded ``batch`` at a time, so the tokenizer's per-text records (tokens, offsets,
        masks) never exist for thousands of texts at once."""
        out: list[list[int]] = []
        for start in range(0, len(texts), batch):
            encoded = self._tok.encode_batch(list(texts[start : start + batch]), add_special_tokens=False)
            out.extend(e.ids for e in encoded)
        return out

    def prompt_ids(self, template: PromptTemplate, content: str, criterion: str) -> tuple[list[int], list[int]]:
        """(first segment ids with any BOS prepended, second segment ids)."""
        first, second = template.segments(content, criterion)
        a, b = self.encode_many([first, second])
        return self.prepend_ids + a, b

    def prompt_ids_many(
        self, template: PromptTemplate, content: str, criteria: Sequence[str]
    ) -> list[tuple[list[int], list[int]]]:
        """``prompt_ids`` for one content and many criteria, tokenizing the shared segment once.

        The content's segment is one list shared by every pair (never copied per criterion)."""
        content_ids = self.content_ids(template, content)
        criterion_ids = self.criterion_ids_many(template, criteria)
        if template.cacheable:
            return [(content_ids, ids) for ids in criterion_ids]
        return [(ids, content_ids) for ids in criterion_ids]

    def content_ids(self, template: PromptTemplate, content: str) -> list[int]:
        """Ids of the content's segment (with any BOS when it is the first segment)."""
        ids = self.encode(template.content_segment(content))
        return self.prepend_ids + ids if template.cacheable else ids

    def criterion_ids_many(self, template: PromptTemplate, criteria: Sequence[str]) -> list[list[int]]:
        """Ids of each criterion's segment (with any BOS when it is the first segment)."""
        encoded = self.encode_many([template.criterion_segment(c) for c in criteria])  # segment texts are short
        return encoded if template.cacheable else [self.prepend_ids + ids for ids in encoded]

    def fit_content(self, template: PromptTemplate, content: str, budget: int) -> tuple[str, list[int], bool] | None:
        """Fit ``content`` into a segment of at most ``budget`` tokens: (text, its segment ids as ``content_ids``
        gives them, whether it was cut). A cut keeps the longest beginning that fits, ending where a token of the
        content ends; None when not even one token of non-blank content fits.

        The cut is made on the text and the segment is tokenized again, so the ids are exactly those of the cut
        text passed in whole (a truncated call scores like the pre-cut content). Long content is read through a
        window that doubles until it holds more than ``budget`` tokens, so a huge text costs about a context's
        worth of tokenizing, not its whole length.
        """
        size = min(len(content), 4 * (budget + 64))
        while size < len(content):
            window = self._tok.encode(content[:size], add_special_tokens=False)
            if len(window.ids) > budget + 16:  # the whole content cannot fit: cut inside this window
                return self._cut(template, content, window.offsets, size, budget)
            size = min(len(content), 2 * size)
        ids = self.content_ids(template, content)
        if len(ids) <= budget:
            return content, ids, False
        return self._cut(template, content, self._tok.encode(content, add_special_tokens=False).offsets,
                         len(content), budget)

    def _cut(
        self, template: PromptTemplate, content: str, offsets: Sequence[tuple[int, int]], size: int, budget: int
    ) -> tuple[str, list[int], bool] | None:
        """Binary search over the token ends in ``content[:size]`` for the longest cut whose segment fits."""
        first_text = len(content) - len(content.lstrip())  # a cut must keep some non-blank text
        cuts = sorted({end for _, end in offsets if first_text < end < size})
        best: tuple[str, list[int], bool] | None = None
        # cuts[lo] fits (lo = -1: nothing yet); cuts[hi] is taken not to. A segment holds at least about as many
        # tokens as the content in it, so cuts past ``budget`` (plus slack for merges with the template text) need
        # no tokenizing: each try tokenizes at most a context's worth of text.
        lo, hi = -1, min(len(cuts), budget + 16)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            text = content[: cuts[mid]]
            ids = self.content_ids(template, text)
            if len(ids) <= budget:
                lo, best = mid, (text, ids, True)
            else:
                hi = mid
        return best
