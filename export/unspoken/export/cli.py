"""Handlers of the export-side subcommands (the parser lives in the runtime CLI, which dispatches here lazily)."""

from __future__ import annotations

import json

from unspoken.runtime.default_bundle import default_head_dir


def cmd_export(args) -> int:
    from .bundle import export_bundle

    out = export_bundle(args.backbone, args.out, args.head or default_head_dir(), lora=args.lora,
                        overwrite=args.overwrite)
    print(f"wrote bundle {out}")
    return 0


def cmd_train_head(args) -> int:
    from .train_head import HeadConfig, train_head

    card = train_head(args.backbone, args.triples, args.out, layer=args.layer, order=args.order,
                      seed_cue=args.seed_cue, config=HeadConfig(kind=args.kind, hidden=tuple(args.hidden), alpha=args.alpha, c=args.c), lora=args.lora)
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
                            threads=args.threads, bf16_autocast=not args.fp32)
    summary = train_lora(args.backbone, args.triples, args.out, template=default_template(args.order, args.seed_cue),
                         settings=settings, max_steps=args.max_steps, resume=args.resume)
    print(f"{summary['steps']} steps, {summary['seconds_per_step']} s/step, final train loss "
          f"{summary['final_train_loss']}, validation loss {summary['validation_loss']}; wrote {args.out}")
    return 0
