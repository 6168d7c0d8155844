"""int8 bundles on a tiny random llama: quantization, head refit on int8 features, quality gate, binding. ~1-2 min.

A head is trained on toy triples (fp32 validation AUROC near 1 on the tiny model), exported once as fp32 and once as
int8; the gate tests make the int8 refit deliberately bad (labels flipped) so the gate has something to refuse.
"""

import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import TINY_LAYER, needs_export, write_toy_triples

pytestmark = needs_export

CONTENT = "I used to hate this product, but honestly now I love it. 🎉 " * 4
CRITERIA = ["The writer likes it.", "Is it about weather?", "x", "Contains code: def f(): pass", "Ünïcödé"]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def case(tiny_dirs, tmp_path_factory):
    from unspoken.export.bundle import export_bundle
    from unspoken.export.train_head import HeadConfig, train_head

    root = tmp_path_factory.mktemp("int8")
    triples = write_toy_triples(root / "triples.jsonl")
    head = root / "head"
    train_head(tiny_dirs["llama"], triples, head, layer=TINY_LAYER, config=HeadConfig(kind="linear"), progress=False)
    fp32 = export_bundle(tiny_dirs["llama"], root / "fp32", head, progress=False)
    int8 = export_bundle(tiny_dirs["llama"], root / "int8", head, progress=False, quantize="int8", triples=triples)
    return SimpleNamespace(root=root, triples=triples, head=head, fp32=fp32, int8=int8, backbone=tiny_dirs["llama"])


def _manifest(bundle) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def test_int8_bundle_loads_scores_and_is_smaller(case):
    import onnx

    from unspoken.runtime import Classifier

    scores = Classifier(case.int8).score(CONTENT, CRITERIA)
    assert len(scores) == len(CRITERIA) and all(0.0 <= s <= 1.0 for s in scores)
    fp32_bytes = (case.fp32 / "backbone.onnx").stat().st_size
    int8_bytes = (case.int8 / "backbone.onnx").stat().st_size
    print(f"\ntiny llama graph: fp32 {fp32_bytes} B, int8 {int8_bytes} B ({int8_bytes / fp32_bytes:.2f}x)")
    assert int8_bytes < 0.75 * fp32_bytes
    assert sorted(p.name for p in case.int8.iterdir()) == ["backbone.onnx", "embeddings.npy", "head.onnx", "manifest.json",
                                                           "tokenizer.json"]  # no fp32 graph, no staging left
    q = _manifest(case.int8)["quantization"]
    assert q["int8_graph_bytes"] == int8_bytes and q["fp32_graph_bytes"] == pytest.approx(fp32_bytes, rel=0.01)
    # the MLP down projections of all three layers stay fp32, found by weight; everything else with a weight is int8
    assert sorted(k["module"] for k in q["kept_fp32"]) == [f"layers.{i}.mlp.down_proj" for i in range(TINY_LAYER)]
    nodes = {n.name: n.op_type for n in onnx.load(str(case.int8 / "backbone.onnx")).graph.node}
    assert all(nodes[k["node"]] == "MatMul" for k in q["kept_fp32"])
    assert q["ops"]["MatMulInteger"] == 6 * TINY_LAYER  # q, k, v, o, gate, up per layer
    assert q["settings"]["per_channel"] is True and q["settings"]["weight_type"] == "QInt8"


def test_int8_features_stay_close_to_fp32_and_the_cosine_is_recorded(case):
    from unspoken.runtime import Classifier

    int8, fp32 = Classifier(case.int8), Classifier(case.fp32)
    cos = _cosines(int8.features(CONTENT, CRITERIA), fp32.features(CONTENT, CRITERIA))
    recorded = _manifest(case.int8)["quantization"]["feature_cosine_to_fp32"]
    print(f"\nint8 vs fp32 seed-state cosine: here min {cos.min():.4f}; recorded at export mean {recorded['mean']:.4f}, "
          f"min {recorded['min']:.4f} over {recorded['rows']} {recorded['split']} rows")
    assert cos.min() > 0.98
    assert recorded["rows"] == 24 and recorded["split"] == "validation"  # the toy validation split
    assert 0.98 < recorded["min"] <= recorded["mean"] < 1.0  # < 1: the graph really was quantized


def test_manifest_records_both_figures_and_binds_the_head_to_the_int8_graph(case):
    from unspoken.runtime.manifest import quantized_fingerprint, sha256_file

    m, fp = _manifest(case.int8), _manifest(case.fp32)
    q, g = m["quantization"], m["quantization"]["quality"]
    card = json.loads((case.head / "head.json").read_text())
    assert g["fp32"]["source"] == "head card (same triples)"
    assert g["validation_auroc_fp32"] == card["training"]["metrics"]["validation"]["auroc"]
    assert g["validation_auroc_int8"] == g["int8"]["validation"]["auroc"]
    assert g["validation_auroc_drop"] <= 0.01 and g["gate"] == "passed"
    assert {"auroc", "ece", "brier", "n"} <= set(g["fp32"]["test"]) & set(g["int8"]["test"])
    assert q["base_fingerprint"] == fp["backbone"]["fingerprint"]
    want = quantized_fingerprint(fp["backbone"]["fingerprint"], sha256_file(case.int8 / "backbone.onnx"))
    assert m["backbone"]["fingerprint"] == m["head"]["binding"]["backbone_fingerprint"] == want
    assert want != q["base_fingerprint"]
    t = m["head"]["training"]
    assert t["config_source"] == "head card" and t["config"]["kind"] == "linear" == m["head"]["kind"]
    assert t["onnx_vs_sklearn_max_abs"] <= 1e-5 and t["triples_sha256"] == sha256_file(case.triples)
    assert "quantization" not in fp  # float bundles keep the manifest they always had


def _swap_head(dst_bundle, src_bundle):
    """Put src's head (file and manifest section) into a copy of dst, with a correct file hash."""
    from unspoken.runtime.manifest import sha256_file

    shutil.copyfile(src_bundle / "head.onnx", dst_bundle / "head.onnx")
    m = _manifest(dst_bundle)
    m["head"] = _manifest(src_bundle)["head"]
    m["files"]["head.onnx"] = sha256_file(dst_bundle / "head.onnx")
    (dst_bundle / "manifest.json").write_text(json.dumps(m))


@pytest.mark.parametrize("graph_from,head_from", [("int8", "fp32"), ("fp32", "int8")])
def test_a_head_of_the_other_precision_is_refused(graph_from, head_from, case, tmp_path):
    from unspoken.runtime import BindingError, Classifier

    b = tmp_path / "b"
    shutil.copytree(getattr(case, graph_from), b)
    _swap_head(b, getattr(case, head_from))
    with pytest.raises(BindingError, match="backbone_fingerprint"):
        Classifier(b)


def test_a_swapped_int8_graph_is_refused(case, tmp_path):
    from unspoken.runtime import BindingError, Classifier

    b = tmp_path / "b"
    shutil.copytree(case.int8, b)
    m = _manifest(b)
    m["quantization"]["base_fingerprint"] = "0" * 64  # as if the graph came from other weights
    (b / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BindingError, match="quantized graph"):
        Classifier(b)


def test_cached_path_matches_the_long_way_within_int8_noise(case):
    """fp32: equal to 1e-6 (test_export_tiny). int8: activations are quantized per tensor, so a row's features depend
    on what else is in the tensor (the content tokens in the long way, other criteria in a batch). Stated tolerance:
    per-row cosine >= 0.98 and calibrated probabilities within 0.05 - the same order as int8 vs fp32 itself."""
    from unspoken.runtime import Classifier

    clf = Classifier(case.int8, chunk_size=3)
    cached = clf.features(CONTENT, CRITERIA)
    long_way = clf.features(CONTENT, CRITERIA, use_cache=False)
    single = np.stack([clf.features(CONTENT, [c])[0] for c in CRITERIA])
    cos_long, cos_single = _cosines(cached, long_way), _cosines(cached, single)
    print(f"\nint8 cached vs long way: min cosine {cos_long.min():.4f}; batched vs single: {cos_single.min():.4f}")
    assert cos_long.min() >= 0.98 and cos_single.min() >= 0.98
    assert np.abs(clf.head.predict(cached) - clf.head.predict(long_way)).max() <= 0.05
    assert np.array_equal(clf.features(CONTENT, CRITERIA), cached)  # the same batch gives the same bits


def _flipped_fit(monkeypatch):
    """Make the int8 refit bad on purpose: fit on inverted train labels (calibration stays honest)."""
    import importlib

    th = importlib.import_module("unspoken.export.train_head")  # the package re-exports a function of that name
    real = th.fit_head
    monkeypatch.setattr(th, "fit_head", lambda x, y, xc, yc, config: real(x, 1 - np.asarray(y), xc, yc, config))


def test_gate_refuses_a_worse_int8_head_with_both_figures(case, monkeypatch):
    from unspoken.export.bundle import export_bundle
    from unspoken.export.quantize import QualityGateError

    _flipped_fit(monkeypatch)
    out = case.root / "refused"
    with pytest.raises(QualityGateError, match=r"validation AUROC 0\.\d+ is 0\.\d+ below the fp32 head's 1\.0000"):
        export_bundle(case.backbone, out, case.head, progress=False, quantize="int8", triples=case.triples)
    assert not out.exists()  # nothing half-written


def test_force_writes_the_refused_bundle_and_records_the_drop(case, monkeypatch, tmp_path):
    """Other triples than the head card's: the fp32 figure is measured (torch features), not read from the card."""
    from unspoken.export.bundle import export_bundle
    from unspoken.export.quantize import QuantizeSettings
    from unspoken.runtime import Classifier

    _flipped_fit(monkeypatch)
    triples = write_toy_triples(tmp_path / "other.jsonl", n=80)
    out = export_bundle(case.backbone, tmp_path / "forced", case.head, progress=False, quantize="int8",
                        triples=triples, force=True, quantize_settings=QuantizeSettings(keep_fp32=()))
    m = _manifest(out)
    g = m["quantization"]["quality"]
    assert g["gate"] == "forced" and g["fp32"]["source"].startswith("fp32 head on torch fp32 features")
    assert g["validation_auroc_fp32"] - g["validation_auroc_int8"] > 0.01
    assert g["fp32"]["validation"]["n"] == g["int8"]["validation"]["n"] == 20
    assert m["quantization"]["kept_fp32"] == [] and m["quantization"]["feature_cosine_to_fp32"]["rows"] == 40
    assert all(0 <= s <= 1 for s in Classifier(out).score(CONTENT, CRITERIA))


def test_quality_gate_rule():
    from unspoken.export.quantize import QualityGateError, quality_gate

    assert quality_gate(0.80, 0.795, 0.01, force=False) == "passed"
    assert quality_gate(0.80, 0.85, 0.01, force=False) == "passed"
    assert quality_gate(0.80, 0.70, 0.01, force=True) == "forced"
    with pytest.raises(QualityGateError, match=r"0\.7000 is 0\.1000 below the fp32 head's 0\.8000"):
        quality_gate(0.80, 0.70, 0.01, force=False)
    with pytest.raises(QualityGateError):
        quality_gate(0.80, float("nan"), 0.01, force=False)  # an undefined AUROC never passes


def test_keep_fp32_pattern_that_matches_nothing_names_the_modules(case):
    from unspoken.export.backbones import load_backbone
    from unspoken.export.onnx_export import truncated_decoder
    from unspoken.export.quantize import linear_weights
    from unspoken.runtime import InputError

    decoder = truncated_decoder(load_backbone(case.backbone, progress=False), TINY_LAYER)
    with pytest.raises(InputError, match="'mlp.fc2' matches no Linear.*down_proj.*q_proj"):
        linear_weights(decoder, ["mlp.fc2"])


def test_cli_refuses_int8_options_without_quantize_and_a_missing_triples_file(case, tmp_path, capsys):
    from unspoken.runtime.cli import main

    assert main(["export", "--backbone", str(case.backbone), "--head", str(case.head), "--out", str(tmp_path / "a"),
                 "--force"]) == 2
    assert "--force: only valid with --quantize int8" in capsys.readouterr().err
    assert main(["export", "--backbone", str(case.backbone), "--head", str(case.head), "--out", str(tmp_path / "b"),
                 "--quantize", "int8", "--triples", str(tmp_path / "nope.jsonl")]) == 2
    assert "nope.jsonl not found" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_cli_passes_int8_options_and_prints_the_figures(case, tmp_path, monkeypatch, capsys):
    import importlib

    from unspoken.runtime.cli import main

    seen = {}

    def fake_export(backbone, out, head, **kwargs):  # the export itself is covered above; this checks the plumbing
        seen.update(kwargs)
        return case.int8

    monkeypatch.setattr(importlib.import_module("unspoken.export.bundle"), "export_bundle", fake_export)
    assert main(["export", "--backbone", str(case.backbone), "--head", str(case.head), "--out", str(tmp_path / "o"),
                 "--quantize", "int8", "--triples", str(case.triples), "--keep-fp32", "--max-auroc-drop", "0.05",
                 "--force"]) == 0
    assert seen["quantize"] == "int8" and seen["force"] is True and seen["triples"] == case.triples
    assert seen["quantize_settings"].keep_fp32 == () and seen["quantize_settings"].max_auroc_drop == 0.05
    out = capsys.readouterr().out
    g = _manifest(case.int8)["quantization"]["quality"]
    assert f"validation AUROC fp32 {g['validation_auroc_fp32']:.4f}" in out and "gate passed" in out
    assert "3 MatMul(s) kept fp32 (patterns: down_proj)" in out and "feature cosine to fp32: mean 0.9" in out
