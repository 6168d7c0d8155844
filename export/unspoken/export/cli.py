"""Handlers of the export-side subcommands (the parser lives in the runtime CLI, which dispatches here lazily)."""

from __future__ import annotations

import json

from unspoken.runtime.default_bundle import default_head_dir


def cmd_export(args) -> int:
    from unspoken.runtime.errors import InputError

    from .bundle import export_bundle
    from .quantize import QuantizeSettings

    int8_only = {"--triples": args.triples is not None, "--keep-fp32": args.keep_fp32 is not None,
                 "--max-auroc-drop": args.max_auroc_drop is not None, "--force": args.force}
    settings = None
    if args.quantize:
        given = {}
        if args.keep_fp32 is not None:
            given["keep_fp32"] = tuple(args.keep_fp32)
        if args.max_auroc_drop is not None:
            given["max_auroc_drop"] = args.max_auroc_drop
        settings = QuantizeSettings(**given)
    elif any(int8_only.values()):
        raise InputError(f"{', '.join(k for k, v in int8_only.items() if v)}: only valid with --quantize int8")
    out = export_bundle(args.backbone, args.out, args.head or default_head_dir(), lora=args.lora,
                        overwrite=args.overwrite, quantize=args.quantize, force=args.force, triples=args.triples,
                        quantize_settings=settings)
    if args.quantize:
        print(int8_summary(json.loads((out / "manifest.json").read_text(encoding="utf-8"))["quantization"]))
    print(f"wrote bundle {out}")
    return 0


def int8_summary(q: dict) -> str:
    """A few lines on an int8 bundle: sizes, MatMuls kept in fp32, feature cosine, AUROC fp32 vs int8, the gate."""
    mb = 1 / 1e6
    kept = q.get("kept_fp32", [])
    patterns = ", ".join(q.get("settings", {}).get("keep_fp32", [])) or "none"
    cos = q["feature_cosine_to_fp32"]
    g = q["quality"]
    lines = [
        f"int8 graph {q['int8_graph_bytes'] * mb:.1f} MB (fp32 {q['fp32_graph_bytes'] * mb:.1f} MB); "
        f"{len(kept)} MatMul(s) kept fp32 (patterns: {patterns})",
        f"feature cosine to fp32: mean {cos['mean']:.4f}, min {cos['min']:.4f} "
        f"over {cos['rows']} {cos.get('split', 'held-out')} rows",
        f"validation AUROC fp32 {g['validation_auroc_fp32']:.4f} ({g['fp32']['source']}), "
        f"int8 {g['validation_auroc_int8']:.4f}: drop {g['validation_auroc_drop']:+.4f}, "
        f"allowed {g['max_auroc_drop']:g} -> gate {g['gate']}",
    ]
    if g["fp32"].get("test") and g["int8"].get("test"):
        lines.append(f"test AUROC fp32 {g['fp32']['test']['auroc']:.4f}, int8 {g['int8']['test']['auroc']:.4f}")
    return "\n".join(lines)


def cmd_train_head(args) -> int:
    from .train_head import HeadConfig, train_head

    card = train_head(args.backbone, args.triples, args.out, layer=args.layer, order=args.order,
                      seed_cue=args.seed_cue, lora=args.lora, chat=args.chat,
                      config=HeadConfig(kind=args.kind, hidden=tuple(args.hidden), alpha=args.alpha, c=args.c,
                                        normalize=args.normalize))
    for split in ("validation", "test"):
        m = card["training"]["metrics"].get(split)
        if m:
            print(f"{split:>10}: n={m['n']} AUROC {m['auroc']:.3f}  accuracy {m['accuracy']:.3f}  "
                  f"ECE {m['ece']:.3f}  Brier {m['brier']:.3f}")
    print(f"wrote head {args.out} (per-family figures in {args.out / 'REPORT.md'})")
    return 0


def cmd_data_check(args) -> int:
    from .data_check import check_file

    report = check_file(args.file)
    print(json.dumps(report.stats, indent=2))
    for line in report.errors[:200]:
        print(f"problem: {line}")
    if len(report.errors) > 200:
        print(f"... and {len(report.errors) - 200} more problems")
    print("ok" if report.ok else f"{len(report.errors)} problem(s) in {args.file}")
    return 0 if report.ok else 1


def cmd_train_lora(args) -> int:
    from unspoken.runtime.template import default_template

    from .lora import LoraSettings, train_lora

    settings = LoraSettings(rank=args.rank, alpha=2 * args.rank, epochs=args.epochs, top_layer=args.top_layer,
                            learning_rate=args.lr, max_tokens=args.max_tokens, seed_loss_weight=args.seed_loss,
                            threads=args.threads, bf16_autocast=not args.fp32,
                            decision_weight=args.decision_weight)
    summary = train_lora(args.backbone, args.triples, args.out, template=default_template(args.order, args.seed_cue),
                         settings=settings, max_steps=args.max_steps, resume=args.resume)
    print(f"{summary['steps']} steps, {summary['seconds_per_step']} s/step, final train loss "
          f"{summary['final_train_loss']}, validation loss {summary['validation_loss']}; wrote {args.out}")
    return 0


def cmd_eval(args) -> int:
    from pathlib import Path

    from unspoken.runtime.default_bundle import ensure_default_bundle
    from unspoken.runtime.errors import InputError
    from unspoken.runtime.paths import shipped_heads_dir

    from .evaluate import OWN_TEST_SET, EvalSet, default_suite, load_suite, own_split, render_table, run_eval, \
        write_outputs

    files: list[Path] = []
    for item in args.suite or default_suite():
        files += sorted(item.glob("*.jsonl")) if item.is_dir() else [item]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise InputError(f"suite file(s) not found: {', '.join(missing)}")
    triples = args.triples or shipped_heads_dir() / "data" / "triples.jsonl"
    sets = load_suite(files, args.per_set or None, args.seed)
    if not args.no_own_test:
        sets.append(EvalSet(OWN_TEST_SET, own_split(triples, "test")))
    if not sets:
        raise InputError("nothing to evaluate: no suite files found (give --suite) and --no-own-test was set")
    bundles = {}
    for spec in args.bundle:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise InputError(f"--bundle expects NAME=DIR, got {spec!r}")
        bundles[name] = Path(path)
    if not bundles:
        bundles["default"] = ensure_default_bundle()
    baselines = [] if args.baselines.strip() == "none" else [b.strip() for b in args.baselines.split(",") if b.strip()]
    unknown = sorted(set(baselines) - {"p_yes", "embedding", "judge"})
    if unknown:
        raise InputError(f"unknown baseline(s) {', '.join(unknown)}; available: p_yes, embedding, judge, none")
    result = run_eval(sets, bundles, baselines=baselines, backbone=args.backbone, triples=triples)
    result["config"] = {"suite": [str(f) for f in files], "per_set": args.per_set, "seed": args.seed,
                        "bundles": {k: str(v) for k, v in bundles.items()}, "baselines": baselines,
                        "backbone": args.backbone}
    write_outputs(result, args.out)
    print(render_table(result))
    print(f"wrote {args.out}/results.json, table.md, reliability.png, per_set.png")
    return 0


def cmd_sweep_head(args) -> int:
    from unspoken.runtime.template import default_template

    from .sweep import DEFAULT_CONFIGS, render_sweep, sweep_heads

    template = default_template(args.order, args.seed_cue)
    configs = [c for c in DEFAULT_CONFIGS if c.kind in args.kinds]
    results = sweep_heads(args.backbone, args.triples, args.layers, template=template, lora=args.lora,
                          chat=args.chat, normalizations=args.normalize, configs=configs)
    table = render_sweep(results, f"{args.backbone}{' + LoRA' if args.lora else ''}, {args.order}"
                                  f"{', chat-wrapped' if args.chat else ''}, seed cue {args.seed_cue!r}")
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".md").write_text(table, encoding="utf-8")
        args.out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0
