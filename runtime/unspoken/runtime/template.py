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
        return self.prefix + first, self.middle + second + self.suffix + self.seed_cue

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

    def encode_many(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

    def prompt_ids(self, template: PromptTemplate, content: str, criterion: str) -> tuple[list[int], list[int]]:
        """(first segment ids with any BOS prepended, second segment ids)."""
        first, second = template.segments(content, criterion)
        a, b = self.encode_many([first, second])
        return self.prepend_ids + a, b

    def prompt_ids_many(
        self, template: PromptTemplate, content: str, criteria: Sequence[str]
    ) -> list[tuple[list[int], list[int]]]:
        """``prompt_ids`` for one content and many criteria, tokenizing the shared segment once."""
        pairs = [template.segments(content, c) for c in criteria]
        if template.cacheable:  # the first segment is the content's, the same for every criterion
            shared = self.prepend_ids + self.encode(pairs[0][0])
            return [(shared, tail) for tail in self.encode_many([b for _, b in pairs])]
        tail = self.encode(pairs[0][1])  # criterion-first: the second segment holds the content
        return [(self.prepend_ids + head, tail) for head in self.encode_many([a for a, _ in pairs])]
