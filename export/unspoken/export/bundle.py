"""Assemble a bundle folder: truncated backbone graph, head graph, tokenizer and a manifest naming all of it."""

from __future__ import annotations

import shutil
from pathlib import Path

from unspoken.runtime.errors import BindingError, InputError
from unspoken.runtime.manifest import (
    BackboneSpec,
    HeadBinding,
    HeadSpec,
    Manifest,
    TokenizerSpec,
    load_manifest,
    sha256_file,
    write_manifest,
)
from unspoken.runtime.template import PromptTemplate, PromptTokenizer

from .onnx_export import DEFAULT_OPSET, export_graph, truncated_decoder, validate_graph
from .train_head import read_head_card

GRAPH_FILE = "backbone.onnx"
HEAD_FILE = "head.onnx"
TOKENIZER_FILE = "tokenizer.json"
SHIPPED_LORA = "lora"  # a head's adapter folder, merged into the backbone before truncation
PARITY_CONTENT = "I used to hate this product, but honestly now I love it. Shipping took 3 days; support was kind."
PARITY_CRITERION = "The writer currently likes the product."


def _check_head_fits(card: dict, bb, layer: int, template: PromptTemplate) -> None:
    binding = card["binding"]
    expected = {
        "backbone_fingerprint": bb.fingerprint,
        "extraction_layer": layer,
        "hidden_size": int(bb.config.hidden_size),
        "template_sha256": template.sha256,
    }
    for name, want in expected.items():
        if binding.get(name) != want:
            raise BindingError(
                f"head {card.get('name')!r} was trained for another backbone/layer/template: binding.{name} is "
                f"{binding.get(name)!r} but this export has {want!r}"
            )


def export_bundle(
    backbone: str | Path,
    out_dir: str | Path,
    head_dir: str | Path,
    *,
    lora: str | Path | None = None,
    opset: int = DEFAULT_OPSET,
    tolerance_rel: float = 1e-4,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Export ``backbone`` (optionally LoRA-merged) truncated at the head's layer, with the head, into ``out_dir``.

    The layer and template come from the head, which is bound to them; the export validates the graph against
    torch before writing the manifest, and reads the finished bundle back through the runtime's loader. A head
    trained on a LoRA-merged backbone ships its adapter in ``<head>/lora/``, which is merged when ``lora`` is None.
    """
    from tqdm.auto import tqdm

    from .backbones import load_backbone

    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise InputError(f"output folder {out_dir} is not empty; pass overwrite=True (--overwrite) to replace it")
    card = read_head_card(head_dir)
    if lora is None and (Path(head_dir) / SHIPPED_LORA / "adapter_config.json").is_file():
        lora = Path(head_dir) / SHIPPED_LORA
    template = PromptTemplate.from_dict(card["template"])
    layer = int(card["binding"]["extraction_layer"])
    steps = tqdm(total=5, desc="export", unit="step", disable=not progress)
    steps.set_postfix_str("load backbone")
    bb = load_backbone(backbone, lora=lora, attn_implementation="eager", progress=progress)
    _check_head_fits(card, bb, layer, template)
    steps.update()
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = bb.config
    kv_heads = int(getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads)
    head_dim = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads)
    decoder = truncated_decoder(bb, layer)
    steps.set_postfix_str(f"export graph (layer {layer}/{bb.num_layers})")
    graph = export_graph(decoder, out_dir / GRAPH_FILE, num_kv_heads=kv_heads, head_dim=head_dim, opset=opset)
    steps.update()
    steps.set_postfix_str("validate against torch")
    tok = PromptTokenizer(bb.tokenizer_file, bb.prepend_ids)
    head_ids, tail_ids = tok.prompt_ids(template, PARITY_CONTENT, PARITY_CRITERION)
    if not template.cacheable:
        head_ids, tail_ids = head_ids + tail_ids[:-4], tail_ids[-4:]
    parity = validate_graph(decoder, out_dir / GRAPH_FILE, graph, head_ids, tail_ids,
                            num_kv_heads=kv_heads, head_dim=head_dim, tolerance_rel=tolerance_rel)
    steps.update()
    steps.set_postfix_str("write bundle")
    shutil.copyfile(Path(head_dir) / card.get("file", HEAD_FILE), out_dir / HEAD_FILE)
    shutil.copyfile(bb.tokenizer_file, out_dir / TOKENIZER_FILE)
    files = sorted(p.name for p in out_dir.iterdir() if p.is_file() and p.name != "manifest.json")
    spec = BackboneSpec(
        name=bb.resolved.name,
        architecture=cfg.model_type,
        weights_sha256=bb.resolved.weights_sha256,
        fingerprint=bb.fingerprint,
        num_layers=bb.num_layers,
        extraction_layer=layer,
        hidden_size=int(cfg.hidden_size),
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        vocab_size=int(cfg.vocab_size),
        max_positions=int(getattr(cfg, "max_position_embeddings", 2048)),
        lora_sha256=bb.lora_sha256,
        lora_config=bb.lora_config,
    )
    manifest = Manifest(
        backbone=spec,
        graph=graph,
        tokenizer=TokenizerSpec(TOKENIZER_FILE, bb.prepend_ids, bb.pad_id),
        template=template,
        head=HeadSpec(
            file=HEAD_FILE,
            kind=card["kind"],
            binding=HeadBinding(**card["binding"]),
            training={"name": card.get("name"), **card.get("training", {})},
        ),
        files={name: sha256_file(out_dir / name) for name in files},
        parity=parity.to_dict(),
        created_by=_versions(),
    )
    write_manifest(out_dir, manifest)
    load_manifest(out_dir)  # the runtime's own checks, before anyone else relies on the bundle
    steps.update()
    steps.set_postfix_str("done")
    steps.update()
    steps.close()
    return out_dir


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for pkg in ("unspoken", "torch", "transformers", "onnx", "onnxruntime"):
        try:
            parts.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            pass
    return ", ".join(parts)
