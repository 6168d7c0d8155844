"""Where unspoken keeps its cache and finds the heads it ships."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_BACKBONE = "smollm2-135m"
DEFAULT_HEAD = "smollm2-135m-content-first"


def cache_dir() -> Path:
    """``$UNSPOKEN_CACHE``, else ``$XDG_CACHE_HOME/unspoken``, else ``~/.cache/unspoken``."""
    if os.environ.get("UNSPOKEN_CACHE"):
        return Path(os.environ["UNSPOKEN_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "unspoken"


def shipped_heads_dir() -> Path:
    """The ``heads/`` folder: ``$UNSPOKEN_HEADS_DIR``, the source checkout's, or the one inside the wheel."""
    if os.environ.get("UNSPOKEN_HEADS_DIR"):
        return Path(os.environ["UNSPOKEN_HEADS_DIR"]).expanduser()
    here = Path(__file__).resolve()
    for candidate in (here.parents[3] / "heads", here.parents[1] / "heads"):
        if candidate.is_dir():
            return candidate
    return here.parents[3] / "heads"
