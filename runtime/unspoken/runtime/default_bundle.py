"""The default bundle: built on first use from the embedded backbone and the shipped head, then reused."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from .errors import BundleError, MissingExtraError
from .manifest import MANIFEST_NAME
from .paths import DEFAULT_BACKBONE, DEFAULT_HEAD, cache_dir, shipped_heads_dir


def default_head_dir() -> Path:
    return shipped_heads_dir() / DEFAULT_HEAD


def default_bundle_dir(quantize: str | None = None) -> Path:
    """Cache folder of the default bundle (``quantize="int8"``: its int8 variant); its name changes whenever the
    shipped head changes."""
    head_dir = default_head_dir()
    card = head_dir / "head.json"
    if not card.is_file():
        raise BundleError(f"the shipped default head is missing ({card}); pass a bundle folder explicitly")
    tag = json.loads(card.read_text(encoding="utf-8")).get("head_sha256", "unknown")[:12]
    return cache_dir() / "bundles" / f"{DEFAULT_HEAD}-{tag}{'-' + quantize if quantize else ''}"


def ensure_default_bundle(progress: bool = True, quantize: str | None = None) -> Path:
    """Return the default bundle folder, exporting it first if it is not cached yet. ``quantize="int8"``: the
    int8 variant (``unspoken export --quantize int8``; a few minutes to build, the head is refit on int8 features)."""
    target = default_bundle_dir(quantize)
    if (target / MANIFEST_NAME).is_file():
        return target
    try:
        from unspoken.export.bundle import export_bundle
    except ImportError as e:
        raise MissingExtraError(
            "the default bundle is built on first use, which needs the export extra "
            "(pip install 'unspoken[export]'); or pass a bundle folder (--bundle DIR / Classifier(DIR))"
        ) from e
    if progress:
        what = f"the {quantize} default bundle" if quantize else "the default bundle"
        print(f"unspoken: building {what} into {target} (once; later runs reuse it)", file=sys.stderr)
    tmp = target.with_name(f"{target.name}.partial{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    export_bundle(DEFAULT_BACKBONE, out_dir=tmp, head_dir=default_head_dir(), progress=progress, quantize=quantize)
    try:
        tmp.rename(target)
    except OSError:  # another process finished the same bundle first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / MANIFEST_NAME).is_file():
            raise
    return target
