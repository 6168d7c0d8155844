"""Cut the decoder after the extraction layer and export it as one ONNX graph for prefill and KV continuation.

Truncation keeps layers [0, L), replaces the final norm with identity and drops the LM head, so the graph's output is
exactly the full model's ``hidden_states[L]``. The wrapper takes flat tensors (names from the manifest's GraphSpec)
and builds a cache without the model config inside ``forward``: for sliding-window models (Gemma) that keeps full KV
and lets the attention mask apply the window, instead of freezing the window cut into the trace.

The token-embedding table stays out of the graph: the graph takes ``inputs_embeds`` and the table is written beside
it as ``embeddings.npy``, holding the embedding module's output for every id (so any scaling the module applies, such
as Gemma's sqrt(hidden), is already in it and the runtime only looks rows up).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unspoken.runtime.errors import UnspokenError
from unspoken.runtime.manifest import GraphSpec

DEFAULT_OPSET = 18
EMBEDDINGS_FILE = "embeddings.npy"


class ParityError(UnspokenError):
    """The exported graph's outputs differ from torch beyond tolerance."""


def truncated_decoder(backbone, layer: int):
    """A shallow copy of the decoder that runs only its first ``layer`` blocks and skips the final norm."""
    import torch

    n = backbone.num_layers
    if not 1 <= layer <= n:
        raise UnspokenError(f"extraction layer {layer} is out of range: the backbone has layers 1..{n}")
    facts = backbone.facts
    kinds = list(getattr(backbone.config, "layer_types", None) or [])[:layer]
    recurrent = [i for i, kind in enumerate(kinds) if kind in facts.recurrent_layer_types]
    if recurrent:
        raise UnspokenError(
            f"{backbone.config.model_type}: layer {recurrent[0]} below the extraction layer is a recurrent (Mamba) "
            "layer whose state is not an attention KV cache; unspoken's graph carries only KV, so this cut is refused. "
            f"Choose an extraction layer ≤ {recurrent[0]} or an attention-only model (e.g. Granite 4.0 micro)."
        )
    decoder = backbone.decoder()
    cut = copy.copy(decoder)
    cut._modules = dict(decoder._modules)  # copy.copy shares the submodule dict; give the cut its own
    setattr(cut, facts.layers, torch.nn.ModuleList(list(getattr(decoder, facts.layers))[:layer]))
    setattr(cut, facts.norm, torch.nn.Identity())
    cfg = copy.deepcopy(decoder.config)
    cfg.num_hidden_layers = layer
    for key in facts.per_layer_config:
        if getattr(cfg, key, None) is not None:
            setattr(cfg, key, list(getattr(cfg, key))[:layer])
    cut.config = cfg
    return cut.eval()


def _make_wrapper(decoder, num_layers: int):
    import inspect

    import torch
    from transformers.cache_utils import DynamicCache

    # transformers 5.25 renamed the decoder's `past_key_values` argument to `cache` (the old name warns until 5.40)
    cache_arg = "cache" if "cache" in inspect.signature(decoder.forward).parameters else "past_key_values"

    class FlatKV(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.decoder = decoder

        def forward(self, inputs_embeds, attention_mask, position_ids, past):
            cache = DynamicCache()  # no config: full KV for every layer; masks apply any sliding window
            for i in range(num_layers):
                cache.update(past[2 * i], past[2 * i + 1], i)
            out = self.decoder(
                inputs_embeds=inputs_embeds,
                attention_mask=attention_mask,
                position_ids=position_ids,
                **{cache_arg: cache},
                use_cache=True,
            )
            presents = []
            for layer in cache.layers[:num_layers]:  # updated in place with this step's keys and values
                presents += [layer.keys, layer.values]
            return (out.last_hidden_state, *presents)

    return FlatKV().eval()


def write_embedding_table(decoder, path: Path, *, chunk: int = 8192) -> Path:
    """The embedding module's output for every token id, float32 [vocab, hidden], as a .npy file."""
    import torch

    emb = decoder.get_input_embeddings()
    vocab, hidden = emb.weight.shape
    table = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(int(vocab), int(hidden)))
    with torch.no_grad():
        for start in range(0, int(vocab), chunk):
            ids = torch.arange(start, min(int(vocab), start + chunk))
            table[start : start + len(ids)] = emb(ids).float().numpy()
    table.flush()
    del table
    return path


def embed(table: np.ndarray, ids) -> np.ndarray:
    """Rows of an embedding table for ids of any shape (what the runtime does)."""
    return np.take(table, np.asarray(ids, dtype=np.int64), axis=0)


def export_graph(decoder, path: Path, *, num_kv_heads: int, head_dim: int, opset: int = DEFAULT_OPSET) -> GraphSpec:
    """Export the truncated decoder to ``path`` (one .onnx file, external data beside it if over 1.5 GB) and its
    embedding table to ``embeddings.npy`` beside it."""
    import torch
    from torch.export import Dim

    n = int(decoder.config.num_hidden_layers)
    spec = GraphSpec(file=path.name, num_kv_layers=n, opset=opset, embeddings=EMBEDDINGS_FILE)
    wrapper = _make_wrapper(decoder, n)
    b, s, p = 2, 5, 7  # trace with past > 0 and batch > 1 so no dimension is specialised
    hidden = int(decoder.config.hidden_size)
    gen = torch.Generator().manual_seed(0)
    embeds = torch.randn(b, s, hidden, generator=gen)
    mask = torch.ones(b, p + s, dtype=torch.long)
    pos = torch.arange(p, p + s).expand(b, s)
    past = tuple(torch.randn(b, num_kv_heads, p, head_dim, generator=gen) for _ in range(2 * n))
    batch, seq, past_len = Dim("batch"), Dim("seq"), Dim("past")
    dynamic = {
        "inputs_embeds": {0: batch, 1: seq},
        "attention_mask": {0: batch, 1: Dim.AUTO},
        "position_ids": {0: batch, 1: seq},
        "past": tuple({0: batch, 2: past_len} for _ in range(2 * n)),
    }
    inputs = [spec.inputs_embeds, spec.attention_mask, spec.position_ids]
    outputs = [spec.hidden_state]
    for i in range(n):
        inputs += [spec.past_key % i, spec.past_value % i]
        outputs += [spec.present_key % i, spec.present_value % i]
    from .quiet import quiet_libraries

    with torch.no_grad(), quiet_libraries():
        program = torch.onnx.export(
            wrapper,
            (embeds, mask, pos, past),
            dynamic_shapes=dynamic,
            dynamo=True,
            opset_version=opset,
            input_names=inputs,
            output_names=outputs,
            verbose=False,
        )
    size = sum(int(np.prod(t.shape)) * 4 for t in decoder.state_dict().values())
    program.save(str(path), external_data=size > 1_500_000_000)
    write_embedding_table(decoder, path.parent / EMBEDDINGS_FILE)
    return spec


@dataclass
class ParityReport:
    prefill_max_abs: float
    prefill_max_rel: float  # max over tokens of max|ort - torch| / max|torch| at that token
    continuation_max_abs: float
    continuation_max_rel: float
    tolerance_rel: float
    prompt_tokens: int
    continuation_tokens: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def per_token_rel(got: np.ndarray, want: np.ndarray) -> float:
    """Largest per-token relative error; token-wise scale matters because token 0 carries values near 1e4-1e5."""
    diff = np.abs(got.astype(np.float64) - want).max(axis=-1)
    scale = np.maximum(np.abs(want).max(axis=-1), 1e-6)
    return float((diff / scale).max())


def validate_graph(decoder, graph_path: Path, spec: GraphSpec, prompt_ids: list[int], tail_ids: list[int],
                   *, num_kv_heads: int, head_dim: int, tolerance_rel: float = 1e-4) -> ParityReport:
    """ORT vs torch on a prefill and a KV continuation; raises ParityError with the max difference."""
    import torch

    from unspoken.runtime.session import make_session

    sess = make_session(graph_path)
    table = np.load(graph_path.parent / spec.embeddings, mmap_mode="r")
    n = spec.num_kv_layers
    full = prompt_ids + tail_ids
    with torch.no_grad():
        want = decoder(input_ids=torch.tensor([full])).last_hidden_state[0].double().numpy()

    def feed(ids, past, past_len):
        f = {
            spec.inputs_embeds: embed(table, [ids]),
            spec.attention_mask: np.ones((1, past_len + len(ids)), dtype=np.int64),
            spec.position_ids: np.arange(past_len, past_len + len(ids), dtype=np.int64)[None],
        }
        for i in range(n):
            f[spec.past_key % i], f[spec.past_value % i] = past[i]
        return f

    empty = np.zeros((1, num_kv_heads, 0, head_dim), dtype=np.float32)
    out = sess.run(None, feed(prompt_ids, [(empty, empty)] * n, 0))
    names = [o.name for o in sess.get_outputs()]
    res = dict(zip(names, out))
    pre = res[spec.hidden_state][0]
    past = [(res[spec.present_key % i], res[spec.present_value % i]) for i in range(n)]
    cont = dict(zip(names, sess.run(None, feed(tail_ids, past, len(prompt_ids)))))[spec.hidden_state][0]
    k = len(prompt_ids)
    report = ParityReport(
        prefill_max_abs=float(np.abs(pre - want[:k]).max()),
        prefill_max_rel=per_token_rel(pre, want[:k]),
        continuation_max_abs=float(np.abs(cont - want[k:]).max()),
        continuation_max_rel=per_token_rel(cont, want[k:]),
        tolerance_rel=tolerance_rel,
        prompt_tokens=len(prompt_ids),
        continuation_tokens=len(tail_ids),
    )
    for what in ("prefill", "continuation"):
        rel = getattr(report, f"{what}_max_rel")
        if not rel <= tolerance_rel:
            raise ParityError(
                f"exported graph fails parity on {what}: max per-token relative difference {rel:.3g} "
                f"(max abs {getattr(report, f'{what}_max_abs'):.3g}) exceeds {tolerance_rel:g}"
            )
    return report
