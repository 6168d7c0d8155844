"""Seed-token hidden states for triples, computed in torch with the runtime's exact tokenization, cached on disk."""

from __future__ import annotations

import hashlib
import json
from typing import Sequence

import numpy as np

from unspoken.runtime.manifest import sha256_file
from unspoken.runtime.paths import cache_dir
from unspoken.runtime.template import PromptTemplate, PromptTokenizer

from .backbones import LoadedBackbone
from .onnx_export import truncated_decoder


def prompt_ids(backbone: LoadedBackbone, template: PromptTemplate, rows: Sequence[dict]) -> list[list[int]]:
    tok = PromptTokenizer(backbone.tokenizer_file, backbone.prepend_ids)
    out = []
    for r in rows:
        head, tail = tok.prompt_ids(template, r["content"], r["criterion"])
        out.append(head + tail)
    return out


def _cache_key(backbone: LoadedBackbone, template: PromptTemplate, rows) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({
        "fingerprint": backbone.fingerprint,
        "template": template.sha256,
        "tokenizer": sha256_file(backbone.tokenizer_file),
        "prepend": backbone.prepend_ids,
    }, sort_keys=True).encode())
    for r in rows:
        h.update(r["content"].encode("utf-8") + b"\0" + r["criterion"].encode("utf-8") + b"\1")
    return h.hexdigest()[:32]


def extract_features(
    backbone: LoadedBackbone,
    template: PromptTemplate,
    rows: Sequence[dict],
    layers: Sequence[int],
    *,
    batch_size: int = 16,
    progress: bool = True,
    use_cache: bool = True,
) -> dict[int, np.ndarray]:
    """{layer: float32 [n_rows, hidden]} of the last prompt token (the seed cue's last token)."""
    import torch
    from tqdm.auto import tqdm

    layers = sorted(set(int(x) for x in layers))
    file = cache_dir() / "features" / f"{_cache_key(backbone, template, rows)}.npz"
    if use_cache and file.is_file():  # one file per (backbone, template, rows), holding whichever layers were run
        with np.load(file) as z:
            if all(f"layer{layer}" in z for layer in layers):
                return {layer: z[f"layer{layer}"] for layer in layers}
    decoder = truncated_decoder(backbone, max(layers))
    prompts = prompt_ids(backbone, template, rows)
    order = np.argsort([len(p) for p in prompts], kind="stable")
    out = {layer: np.empty((len(rows), backbone.config.hidden_size), dtype=np.float32) for layer in layers}
    bar = tqdm(total=len(rows), desc="features", unit="row", disable=not progress)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            lengths = [len(prompts[i]) for i in idx]
            width = max(lengths)
            ids = torch.full((len(idx), width), backbone.pad_id, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for j, i in enumerate(idx):
                ids[j, : lengths[j]] = torch.tensor(prompts[i])
                mask[j, : lengths[j]] = 1
            hs = decoder(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
            last = torch.tensor(lengths) - 1
            for layer in layers:
                out[layer][idx] = hs[layer][torch.arange(len(idx)), last].float().numpy()
            bar.update(len(idx))
    bar.close()
    if use_cache:
        file.parent.mkdir(parents=True, exist_ok=True)
        np.savez(file, **{f"layer{layer}": a for layer, a in out.items()})
    return out
