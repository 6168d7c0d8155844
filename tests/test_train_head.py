"""train-head end to end on a tiny backbone: features -> head -> card/report -> bundle -> scores."""

import json

import numpy as np

from conftest import needs_export

pytestmark = needs_export


def _triples(path):
    rows = []
    for i in range(90):
        positive = i % 2 == 0
        rows.append({
            "content": f"Message {i}: I {'love' if positive else 'hate'} this {['phone', 'film', 'cafe'][i % 3]}.",
            "criterion": f"The writer likes the thing (variant {i % 9}).",
            "label": int(positive),
            "split": ["train", "train", "train", "validation", "test"][i % 5],
        })
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_train_head_writes_a_bound_head_that_exports_and_scores(tiny_dirs, tmp_path):
    from unspoken.export.bundle import export_bundle
    from unspoken.export.train_head import HeadConfig, train_head
    from unspoken.runtime import Classifier

    head = tmp_path / "head"
    card = train_head(tiny_dirs["llama"], _triples(tmp_path / "t.jsonl"), head, layer=2,
                      config=HeadConfig(kind="linear"), progress=False)
    assert card["binding"]["extraction_layer"] == 2
    assert card["training"]["rows"] == {"train": 54, "validation": 18, "test": 18}
    assert card["training"]["onnx_vs_sklearn_max_abs"] <= 1e-5
    assert {"validation", "test"} <= set(card["training"]["metrics"])
    assert "| test |" in (head / "REPORT.md").read_text()
    bundle = export_bundle(tiny_dirs["llama"], tmp_path / "bundle", head, progress=False)
    scores = Classifier(bundle).score("I love this phone.", ["The writer likes the thing.", "x"])
    assert np.all(np.isfinite(scores)) and all(0 <= s <= 1 for s in scores)
