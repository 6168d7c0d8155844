"""Assemble a bundle folder: truncated backbone graph (fp32, or int8 with a refit head), head graph, tokenizer and a
manifest naming all of it."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from unspoken.runtime.errors import BindingError, InputError
from unspoken.runtime.manifest import (
    BackboneSpec,
    HeadBinding,
    HeadSpec,
    Manifest,
    TokenizerSpec,
    load_manifest,
    quantized_fingerprint,
    sha256_file,
    write_manifest,
)
from unspoken.runtime.paths import shipped_heads_dir
from unspoken.runtime.template import PromptTemplate, PromptTokenizer

from .onnx_export import DEFAULT_OPSET, export_graph, truncated_decoder, validate_graph
from .quantize import QuantizeSettings
from .train_head import read_head_card

GRAPH_FILE = "backbone.onnx"
HEAD_FILE = "head.onnx"
TOKENIZER_FILE = "tokenizer.json"
STAGING_DIR = ".unspoken-staging"  # int8 exports stage the fp32 graph and a trial bundle here; removed at the end
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
    quantize: str | None = None,
    force: bool = False,
    triples: str | Path | None = None,
    quantize_settings: QuantizeSettings | None = None,
) -> Path:
    """Export ``backbone`` (optionally LoRA-merged) truncated at the head's layer, with the head, into ``out_dir``.

    The layer and template come from the head, which is bound to them; the export validates the graph against
    torch before writing the manifest, and reads the finished bundle back through the runtime's loader. A head
    trained on a LoRA-merged backbone ships its adapter in ``<head>/lora/``, which is merged when ``lora`` is None.

    ``quantize="int8"`` ships an int8 graph instead: the validated fp32 graph is quantized (``quantize_settings``),
    the head's config is refit and recalibrated on int8 features of ``triples`` (default: the shipped
    ``heads/data/triples.jsonl``), and the bundle is refused with QualityGateError when its validation AUROC falls
    more than ``quantize_settings.max_auroc_drop`` below the fp32 head's, unless ``force``.
    """
    from tqdm.auto import tqdm

    from .backbones import load_backbone

    out_dir = Path(out_dir)
    if quantize not in (None, "int8"):
        raise InputError(f"quantize={quantize!r} is not known; available: int8")
    if quantize is None and (force or triples is not None or quantize_settings is not None):
        raise InputError("force, triples and quantize settings apply only to an int8 export (quantize='int8')")
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise InputError(f"output folder {out_dir} is not empty; pass overwrite=True (--overwrite) to replace it")
    card = read_head_card(head_dir)
    rows: list[dict] = []
    if quantize:
        from .triples import load_triples

        triples = Path(triples) if triples is not None else shipped_heads_dir() / "data" / "triples.jsonl"
        if not triples.is_file():
            raise InputError(f"triples file {triples} not found; the int8 head is refit on it (--triples FILE)")
        rows = load_triples(triples)  # read before the slow steps: a bad file fails in a second
        quantize_settings = quantize_settings or QuantizeSettings()
    if lora is None and (Path(head_dir) / SHIPPED_LORA / "adapter_config.json").is_file():
        lora = Path(head_dir) / SHIPPED_LORA
    template = PromptTemplate.from_dict(card["template"])
    layer = int(card["binding"]["extraction_layer"])
    steps = tqdm(total=8 if quantize else 5, desc="export", unit="step", disable=not progress)
    steps.set_postfix_str("load backbone")
    bb = load_backbone(backbone, lora=lora, attn_implementation="eager", progress=progress)
    _check_head_fits(card, bb, layer, template)
    steps.update()
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = out_dir / STAGING_DIR
    graph_path = staging / "fp32" / GRAPH_FILE if quantize else out_dir / GRAPH_FILE
    graph_path.parent.mkdir(parents=True, exist_ok=True)
    cfg = bb.config
    kv_heads = int(getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads)
    head_dim = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads)
    decoder = truncated_decoder(bb, layer)
    try:
        steps.set_postfix_str(f"export graph (layer {layer}/{bb.num_layers})")
        graph = export_graph(decoder, graph_path, num_kv_heads=kv_heads, head_dim=head_dim, opset=opset)
        steps.update()
        steps.set_postfix_str("validate against torch")
        tok = PromptTokenizer(bb.tokenizer_file, bb.prepend_ids)
        head_ids, tail_ids = tok.prompt_ids(template, PARITY_CONTENT, PARITY_CRITERION)
        if not template.cacheable:
            head_ids, tail_ids = head_ids + tail_ids[:-4], tail_ids[-4:]
        parity = validate_graph(decoder, graph_path, graph, head_ids, tail_ids,
                                num_kv_heads=kv_heads, head_dim=head_dim, tolerance_rel=tolerance_rel)
        steps.update()
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
            sliding_window=_sliding_window(cfg),
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
            files={},
            parity=parity.to_dict(),
            created_by=_versions(),
        )
        if quantize:
            _export_int8(manifest, bb, decoder, card, Path(head_dir), graph_path, staging, out_dir, rows,
                         Path(triples), quantize_settings, force=force, progress=progress, steps=steps)
        else:
            steps.set_postfix_str("write bundle")
            shutil.copyfile(Path(head_dir) / card.get("file", HEAD_FILE), out_dir / HEAD_FILE)
            shutil.copyfile(bb.tokenizer_file, out_dir / TOKENIZER_FILE)
            files = sorted(p.name for p in out_dir.iterdir() if p.is_file() and p.name != "manifest.json")
            write_manifest(out_dir, replace(manifest, files={name: sha256_file(out_dir / name) for name in files}))
            load_manifest(out_dir)  # the runtime's own checks, before anyone else relies on the bundle
            steps.update()
    except BaseException:
        if created and out_dir.is_dir():
            shutil.rmtree(staging, ignore_errors=True)
            if not any(out_dir.iterdir()):
                out_dir.rmdir()
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    steps.set_postfix_str("done")
    steps.update()
    steps.close()
    return out_dir


def _sliding_window(cfg) -> int | None:
    window = getattr(cfg, "sliding_window", None)
    return int(window) if window else None


def _export_int8(manifest: Manifest, bb, decoder, card: dict, head_dir: Path, fp32_graph: Path, staging: Path,
                 out_dir: Path, rows: list[dict], triples: Path, settings: QuantizeSettings, *, force: bool,
                 progress: bool, steps) -> Manifest:
    """Quantize, extract int8 features through the runtime, refit + calibrate the head, gate, write the bundle.

    Nothing lands in ``out_dir`` before the gate passes: the int8 graph is first read back from a staging bundle
    whose placeholder head is never written out."""
    import numpy as np

    from .head_graph import HeadParams, save_head_model
    from .quantize import (
        INT8_SCHEME, cosine_summary, find_matmuls, fp32_reference, head_config_from_card, linear_weights,
        quality_gate, quantize_graph, runtime_features, split_metrics,
    )
    from .train_head import fit_head, split_arrays, write_head

    steps.set_postfix_str("quantize int8")
    kept = []
    if settings.keep_fp32:
        kept = find_matmuls(_load_onnx(fp32_graph), linear_weights(decoder, settings.keep_fp32))
    stage = staging / "int8"
    stage.mkdir(parents=True, exist_ok=True)
    int8_graph = stage / GRAPH_FILE
    ops = quantize_graph(fp32_graph, int8_graph, kept, settings)
    fingerprint = quantized_fingerprint(bb.fingerprint, sha256_file(int8_graph))
    steps.update()

    steps.set_postfix_str("int8 features")
    h = manifest.backbone.hidden_size
    binding = replace(manifest.head.binding, backbone_fingerprint=fingerprint)
    placeholder = HeadParams(np.zeros(h), np.ones(h), [np.zeros((h, 1))], [np.zeros(1)], np.array([0.0, 1.0]),
                             np.array([0.0, 1.0]))
    save_head_model(placeholder, stage / HEAD_FILE)  # the runtime loads a whole bundle; only its features are used
    shutil.copyfile(bb.tokenizer_file, stage / TOKENIZER_FILE)
    stage_files = [GRAPH_FILE, HEAD_FILE, TOKENIZER_FILE]
    if manifest.graph.embeddings:  # the fp32 table serves the int8 graph unchanged
        shutil.move(str(fp32_graph.parent / manifest.graph.embeddings), stage / manifest.graph.embeddings)
        stage_files.append(manifest.graph.embeddings)
    quantization = {"scheme": INT8_SCHEME, "base_fingerprint": bb.fingerprint}
    staged = replace(
        manifest,
        backbone=replace(manifest.backbone, fingerprint=fingerprint),
        head=replace(manifest.head, binding=binding, training={"placeholder": True}),
        files={n: sha256_file(stage / n) for n in stage_files},
        quantization=quantization,
    )
    write_manifest(stage, staged)
    feats = runtime_features(stage, rows, progress=progress)
    steps.update()

    steps.set_postfix_str("refit head on int8 features")
    config, config_source = head_config_from_card(card)
    x_tr, y_tr = split_arrays(rows, feats, "train")
    x_va, y_va = split_arrays(rows, feats, "validation")
    x_te, y_te = split_arrays(rows, feats, "test")
    if not len(y_tr) or not len(y_va):
        raise InputError(f"{triples} needs train and validation rows to refit the int8 head")
    fitted = fit_head(x_tr, y_tr, x_va, y_va, config)
    int8_metrics = {"validation": split_metrics(y_va, fitted.predict(x_va)),
                    "test": split_metrics(y_te, fitted.predict(x_te))}
    triples_sha = sha256_file(triples)
    head_card = {
        "schema_version": 1,
        "name": f"{card.get('name')}-int8",
        "kind": config.kind,
        "binding": binding.__dict__,
        "template": manifest.template.to_dict(),
        "training": {
            "refit_on": f"int8 features of {GRAPH_FILE} through onnxruntime",
            "from_head": {"name": card.get("name"), "head_sha256": card.get("head_sha256")},
            "triples": triples.name,
            "triples_sha256": triples_sha,
            "rows": {s: int(sum(r["split"] == s for r in rows)) for s in ("train", "validation", "test")},
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.__dict__.items()},
            "config_source": config_source,
            "metrics": {k: v for k, v in int8_metrics.items() if v is not None},
        },
    }
    check = np.concatenate([x_va, x_te]) if len(y_te) else x_va
    write_head(fitted, staging / "head", card=head_card, check_features=check)  # refuses if ONNX != sklearn

    fp32, ref, ref_feats = fp32_reference(bb, manifest.template, manifest.backbone.extraction_layer, rows, card,
                                          head_dir / card.get("file", HEAD_FILE), triples_sha,
                                          cosine_rows=settings.cosine_rows, progress=progress)
    splits = sorted({rows[i]["split"] for i in ref}, reverse=True)
    cosine = cosine_summary(feats[ref], ref_feats) | {"split": "+".join(splits)}
    fp32_auroc, int8_auroc = float(fp32["validation"]["auroc"]), float(int8_metrics["validation"]["auroc"])
    gate = quality_gate(fp32_auroc, int8_auroc, settings.max_auroc_drop, force=force)
    steps.update()

    steps.set_postfix_str("write bundle")
    shutil.move(str(int8_graph), out_dir / GRAPH_FILE)
    if manifest.graph.embeddings:
        shutil.move(str(stage / manifest.graph.embeddings), out_dir / manifest.graph.embeddings)
    shutil.copyfile(bb.tokenizer_file, out_dir / TOKENIZER_FILE)
    shutil.copyfile(staging / "head" / HEAD_FILE, out_dir / HEAD_FILE)
    quantization.update({
        "settings": settings.to_dict(),
        "kept_fp32": [k.__dict__ for k in kept],
        "ops": ops,
        "fp32_graph_bytes": fp32_graph.stat().st_size,
        "int8_graph_bytes": (out_dir / GRAPH_FILE).stat().st_size,
        "feature_cosine_to_fp32": cosine,
        "quality": {
            "fp32": fp32,
            "int8": int8_metrics,
            "validation_auroc_fp32": fp32_auroc,
            "validation_auroc_int8": int8_auroc,
            "validation_auroc_drop": fp32_auroc - int8_auroc,
            "max_auroc_drop": settings.max_auroc_drop,
            "gate": gate,
        },
        "parity": "manifest.parity is the fp32 graph against torch, before quantization",
    })
    files = sorted(p.name for p in out_dir.iterdir() if p.is_file() and p.name != "manifest.json")
    final = replace(
        staged,
        head=HeadSpec(file=HEAD_FILE, kind=config.kind, binding=binding, training=head_card["training"]),
        files={name: sha256_file(out_dir / name) for name in files},
        quantization=quantization,
    )
    write_manifest(out_dir, final)
    load_manifest(out_dir)
    steps.update()
    return final


def _load_onnx(path: Path):
    import onnx

    return onnx.load(str(path))


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for pkg in ("unspoken", "torch", "transformers", "onnx", "onnxruntime"):
        try:
            parts.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            pass
    return ", ".join(parts)
