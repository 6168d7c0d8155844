"""Head sweep on our validation split: extraction layers x head kinds, features from one forward pass.

Every candidate is fit on the train split and scored on the validation split (criteria unseen in training); the
test split is never looked at here, so picking the winner does not leak into the reported test figures.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from unspoken.runtime.template import PromptTemplate, default_template

from . import metrics
from .train_head import HeadConfig, fit_head, split_arrays

DEFAULT_CONFIGS = (
    HeadConfig(kind="linear", c=0.01), HeadConfig(kind="linear", c=0.1), HeadConfig(kind="linear", c=1.0),
    HeadConfig(kind="mlp", hidden=(64,), alpha=1e-1), HeadConfig(kind="mlp", hidden=(256,), alpha=1e-2),
)


def describe(config: HeadConfig) -> str:
    if config.kind == "linear":
        return f"linear C={config.c:g}"
    return f"mlp {'x'.join(map(str, config.hidden))} alpha={config.alpha:g}"


def sweep_heads(
    backbone: str,
    triples: str | Path,
    layers: Sequence[int],
    *,
    template: PromptTemplate | None = None,
    configs: Sequence[HeadConfig] = DEFAULT_CONFIGS,
    lora: str | Path | None = None,
    chat: bool = False,
    normalizations: Sequence[str] = ("standard",),
    progress: bool = True,
) -> list[dict]:
    """One row per (layer, head config, feature normalisation) with validation metrics, best validation AUROC
    first. Test rows are dropped before the forward pass: they are neither needed nor looked at."""
    from .backbones import load_backbone
    from .features import extract_features
    from .triples import load_triples

    template = template or default_template()
    rows = [r for r in load_triples(triples) if r["split"] in ("train", "validation")]
    bb = load_backbone(backbone, lora=lora, attn_implementation="sdpa", progress=progress)
    if chat:
        from .chat import chat_wrapped

        template = chat_wrapped(template, bb)
    feats = extract_features(bb, template, rows, layers, progress=progress)
    results = []
    for layer in sorted(feats):
        x_tr, y_tr = split_arrays(rows, feats[layer], "train")
        x_va, y_va = split_arrays(rows, feats[layer], "validation")
        for config in configs:
            for norm in normalizations:
                candidate = replace(config, normalize=norm)
                fitted = fit_head(x_tr, y_tr, x_va, y_va, candidate)
                results.append({"layer": layer, "head": describe(candidate), "normalize": norm,
                                "config": asdict(candidate), **metrics.summary(y_va, fitted.predict(x_va))})
    return sorted(results, key=lambda r: -r["auroc"])


def render_sweep(results: list[dict], title: str) -> str:
    lines = [f"### {title}", "", "| layer | head | features | validation AUROC | accuracy | ECE | Brier |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['layer']} | {r['head']} | {r.get('normalize', 'standard')} | {r['auroc']:.3f} | "
                     f"{r['accuracy']:.3f} | {r['ece']:.3f} | {r['brier']:.3f} |")
    lines.append("\nThe isotonic calibrator is fit on the validation split, so ECE there is in-sample (near 0 by "
                 "construction); calibration is judged on the test split and the public suite.")
    return "\n".join(lines) + "\n"
