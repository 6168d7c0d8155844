"""Tiny random llama and gemma3 bundles: KV-popping through the runtime, manifest refusals. Seconds each.

Per-architecture truncation and graph parity live in test_architectures.py."""

import json
import shutil

import numpy as np
import pytest

from conftest import TINY_LAYER, needs_export

pytestmark = needs_export


@pytest.mark.parametrize("key", [("llama", "content-first"), ("gemma3", "content-first")])
def test_cached_batched_single_and_long_way_agree(key, tiny_bundles):
    from unspoken.runtime import Classifier

    clf = Classifier(tiny_bundles[key], chunk_size=3)  # 5 criteria -> two chunks
    content = "I used to hate this product, but honestly now I love it. 🎉 " * 4
    criteria = ["The writer likes it.", "Is it about weather?", "x", "Contains code: def f(): pass", "Ünïcödé"]
    batched = clf.features(content, criteria)
    single = np.stack([clf.features(content, [c])[0] for c in criteria])
    long_way = clf.features(content, criteria, use_cache=False)
    assert np.abs(batched - single).max() <= 1e-6 * max(1.0, np.abs(single).max())
    assert np.abs(batched - long_way).max() <= 1e-6 * max(1.0, np.abs(long_way).max())
    scores = np.array(clf.score(content, criteria))
    singles = np.array([clf.score(content, [c])[0] for c in criteria])
    longs = clf.head.predict(long_way)
    assert np.abs(scores - singles).max() <= 1e-6
    assert np.abs(scores - longs).max() <= 1e-6
    assert np.all((scores >= 0) & (scores <= 1))
    many = clf.score_many([(content, criteria), (content, criteria[0])])  # the single shares a full pass
    assert many[0] == list(scores) and many[1] == pytest.approx([scores[0]], abs=1e-6)


def test_criterion_first_scores_each_criterion_in_full(tiny_bundles):
    from unspoken.runtime import Classifier, InputError

    clf = Classifier(tiny_bundles[("llama", "criterion-first")])
    crit = ["a short one", "a much longer criterion about several things at once"]
    batched = clf.score("some content", crit)
    assert batched == pytest.approx([clf.score("some content", c)[0] for c in crit], abs=1e-6)
    with pytest.raises(InputError, match="criterion-first"):
        clf.features("some content", crit, use_cache=True)


def test_manifest_records_parity_and_files(tiny_bundles):
    bundle = tiny_bundles[("llama", "content-first")]
    m = json.loads((bundle / "manifest.json").read_text())
    assert m["parity"]["prefill_max_rel"] <= 1e-4
    assert set(m["files"]) == {"backbone.onnx", "embeddings.npy", "head.onnx", "tokenizer.json"}
    assert m["backbone"]["extraction_layer"] == TINY_LAYER
    assert m["graph"]["past_key"] == "past_key_values.%d.key"


def _copy(bundle, tmp_path):
    dst = tmp_path / "b"
    shutil.copytree(bundle, dst)
    return dst


def test_edited_file_is_refused_by_name(tiny_bundles, tmp_path):
    from unspoken.runtime import BundleError, Classifier

    b = _copy(tiny_bundles[("llama", "content-first")], tmp_path)
    with open(b / "head.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match="head.onnx"):
        Classifier(b)


@pytest.mark.parametrize("field,value", [("extraction_layer", 2), ("template_sha256", "0" * 64),
                                         ("backbone_fingerprint", "f" * 64), ("hidden_size", 65)])
def test_mismatched_head_is_refused_naming_the_field(field, value, tiny_bundles, tmp_path):
    from unspoken.runtime import BindingError, Classifier

    b = _copy(tiny_bundles[("llama", "content-first")], tmp_path)
    m = json.loads((b / "manifest.json").read_text())
    m["head"]["binding"][field] = value
    (b / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BindingError, match=field):
        Classifier(b)


def test_newer_schema_is_refused_with_versions(tiny_bundles, tmp_path):
    from unspoken.runtime import BundleError, Classifier

    b = _copy(tiny_bundles[("llama", "content-first")], tmp_path)
    m = json.loads((b / "manifest.json").read_text())
    m["schema_version"] = 99
    (b / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="99.*up to 2"):
        Classifier(b)


def test_export_refuses_a_head_bound_elsewhere(tiny_dirs, tiny_bundles, tmp_path):
    from unspoken.export.bundle import export_bundle
    from unspoken.runtime import BindingError

    head = tiny_bundles[("llama", "content-first")].parent / "head-llama-content-first"
    with pytest.raises(BindingError, match="backbone_fingerprint"):
        export_bundle(tiny_dirs["gemma3"], tmp_path / "out", head, progress=False)
