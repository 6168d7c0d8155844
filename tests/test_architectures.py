"""Every supported decoder family, as a tiny random-weight model built here: truncation is exact, the ONNX graph
matches torch, and KV-popping in ONNX Runtime equals one full pass. Hybrid Mamba cuts are refused, not mis-exported."""

import numpy as np
import pytest

from conftest import needs_export
from tiny_models import ARCHITECTURES, make_tiny_model, tiny_config

pytestmark = needs_export
LAYER = 3
PROMPT, TAIL = 120, 9  # far past the tiny sliding windows (8 tokens) of mistral, gemma2 and gemma3


@pytest.fixture(scope="module", params=ARCHITECTURES)
def exported(request, tmp_path_factory):
    from unspoken.export.backbones import load_backbone
    from unspoken.export.onnx_export import export_graph, truncated_decoder

    arch = request.param
    folder = make_tiny_model(tmp_path_factory.mktemp(arch) / "model", arch)
    bb = load_backbone(folder, progress=False)
    cfg = bb.config
    kv, hd = cfg.num_key_value_heads, getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    dec = truncated_decoder(bb, LAYER)
    path = folder.parent / "graph.onnx"
    spec = export_graph(dec, path, num_kv_heads=kv, head_dim=hd)
    return arch, bb, dec, path, spec, kv, hd


def test_truncated_decoder_equals_full_hidden_state(exported):
    import torch

    arch, bb, dec, *_ = exported
    ids = torch.randint(3, 300, (2, 50), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = bb.model(ids, output_hidden_states=True).hidden_states[LAYER]
        assert torch.equal(dec(input_ids=ids).last_hidden_state, full), arch


def test_onnx_matches_torch_prefill_and_continuation(exported):
    from unspoken.export.onnx_export import validate_graph

    arch, bb, dec, path, spec, kv, hd = exported
    rng = np.random.default_rng(1)
    report = validate_graph(dec, path, spec, rng.integers(3, 300, PROMPT).tolist(), rng.integers(3, 300, TAIL).tolist(),
                            num_kv_heads=kv, head_dim=hd, tolerance_rel=1e-5)
    assert report.prefill_max_rel <= 1e-5 and report.continuation_max_rel <= 1e-5, arch


def test_kv_popping_equals_the_long_way_in_onnx_runtime(exported):
    from unspoken.runtime.session import make_session

    arch, bb, dec, path, spec, kv, hd = exported
    from unspoken.export.onnx_export import embed

    sess = make_session(path)
    table = np.load(path.parent / spec.embeddings)
    rng = np.random.default_rng(2)
    ids = rng.integers(3, 300, PROMPT + TAIL)

    def run(tokens, past, start):
        feed = {spec.inputs_embeds: embed(table, tokens[None]), spec.attention_mask: np.ones((1, start + len(tokens)), dtype=np.int64),
                spec.position_ids: np.arange(start, start + len(tokens))[None]}
        for i, (k, v) in enumerate(past):
            feed[spec.past_key % i], feed[spec.past_value % i] = k, v
        out = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed)))
        return out[spec.hidden_state][0], [(out[spec.present_key % i], out[spec.present_value % i])
                                          for i in range(spec.num_kv_layers)]

    empty = np.zeros((1, kv, 0, hd), dtype=np.float32)
    long_way, _ = run(ids, [(empty, empty)] * spec.num_kv_layers, 0)
    _, past = run(ids[:PROMPT], [(empty, empty)] * spec.num_kv_layers, 0)
    popped, _ = run(ids[PROMPT:], past, PROMPT)
    scale = np.abs(long_way[PROMPT:]).max(axis=-1, keepdims=True)
    assert (np.abs(popped - long_way[PROMPT:]) / scale).max() <= 1e-5, arch


def test_hybrid_with_mamba_below_the_cut_is_refused(tmp_path):
    from unspoken.export.backbones import load_backbone
    from unspoken.export.onnx_export import truncated_decoder
    from unspoken.runtime import UnspokenError

    cfg = tiny_config("granitemoehybrid", vocab_size=400)
    cfg.layer_types = ["full_attention", "linear_attention", "full_attention", "full_attention"]
    cfg.mamba_n_heads, cfg.mamba_d_head, cfg.mamba_d_state, cfg.mamba_chunk_size = 4, 32, 16, 16
    bb = load_backbone(make_tiny_model(tmp_path / "hybrid", "granitemoehybrid", config=cfg), progress=False)
    with pytest.raises(UnspokenError, match="layer 1 .*Mamba"):
        truncated_decoder(bb, 3)
    assert truncated_decoder(bb, 1) is not None  # a cut below the first Mamba layer is plain KV and allowed
