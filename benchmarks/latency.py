"""Per-criterion latency of the production path: content-first KV continuation vs one full pass per criterion,
with the HF transformers full-model forward (torch) as the baseline, all measured in the same run and interleaved.

    python benchmarks/latency.py [--bundle DIR] [--int8-bundle DIR] [--repeats 15] [--out FILE.json]

Reports p50/p95 milliseconds per decision and ratios to the torch baseline; records versions, threads, token counts.
With ``--int8-bundle`` (``unspoken export --quantize int8``) the int8 graph's cached and full-pass paths are timed in
the same interleaved loop, next to fp32.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

CONTENT = (
    "Order #4417 arrived two days late and the box was dented, which annoyed me at first. I used to hate this brand "
    "because their last blender broke within a month, but the support team replaced it without any fuss and this "
    "new model is quiet, powerful and easy to clean. Honestly, now I love it and I've already recommended it to my "
    "sister. The only remaining gripe is the short power cord, which barely reaches the outlet behind my counter. "
    "Would I buy it again? Yes, probably, though I'd wait for a sale."
)
CRITERIA = [
    "The writer currently likes the product.",
    "The writer asks for a refund.",
    "The delivery was on time.",
    "The writer recommends the product to someone else.",
    "The text mentions a problem with the power cord.",
    "The writer is a professional chef.",
    "The message contains a threat.",
    "The review is mostly negative.",
    "The writer contacted customer support.",
    "The text is written in French.",
    "The writer would buy the product again.",
    "The product is a vacuum cleaner.",
    "The writer's sister bought the product.",
    "The previous product from this brand broke.",
    "The writer is sarcastic.",
    "The box was damaged.",
]


def _versions() -> dict:
    out = {"python": platform.python_version(), "machine": platform.machine()}
    for pkg in ("unspoken", "onnxruntime", "numpy", "tokenizers", "torch", "transformers"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def _pct(samples: list[float]) -> dict:
    a = np.asarray(samples) * 1000
    return {"p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)), "n": len(a)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", type=Path, help="bundle folder (default: the default bundle)")
    ap.add_argument("--int8-bundle", type=Path, help="also time this int8 bundle in the same run")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--criteria", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--threads", type=int)
    ap.add_argument("--no-torch", action="store_true", help="skip the torch baseline")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "latency.json")
    args = ap.parse_args()

    from unspoken.runtime import Classifier

    clf = Classifier(args.bundle, threads=args.threads)
    threads = clf.graph.session.get_session_options().intra_op_num_threads
    m = clf.manifest
    head_ids, tail_ids = clf.tokenizer.prompt_ids(m.template, CONTENT, CRITERIA[0])
    methods = {
        "content_first_cached": lambda crit: clf.features(CONTENT, crit, use_cache=True),
        "full_pass_per_criterion": lambda crit: clf.features(CONTENT, crit, use_cache=False),
    }
    int8 = None
    if args.int8_bundle:
        int8 = Classifier(args.int8_bundle, threads=args.threads)
        if not int8.manifest.quantization:
            ap.error(f"{args.int8_bundle} is not an int8 bundle (its manifest has no quantization record)")
        if int8.template.sha256 != m.template.sha256:
            ap.error("the int8 bundle's prompt template differs from the fp32 bundle's; the timings would not compare")
        methods["int8_content_first_cached"] = lambda crit: int8.features(CONTENT, crit, use_cache=True)
        methods["int8_full_pass_per_criterion"] = lambda crit: int8.features(CONTENT, crit, use_cache=False)
    torch_model = None
    if not args.no_torch:
        try:
            import torch

            from unspoken.export.backbones import load_backbone

            torch.set_num_threads(threads)
            bb = load_backbone(m.backbone.name, attn_implementation="sdpa", progress=False)
            torch_model = bb.model

            def hf_full(crit):
                with torch.inference_mode():
                    for c in crit:  # one full-model forward per (content, criterion) pair, as a user would
                        h, t = clf.tokenizer.prompt_ids(m.template, CONTENT, c)
                        torch_model(torch.tensor([h + t]))

            methods["hf_transformers_full_model"] = hf_full
        except ImportError:
            print("torch baseline skipped: the export extra is not installed")
    results = {}
    for n in args.criteria:
        crit = (CRITERIA * (n // len(CRITERIA) + 1))[:n]
        for fn in methods.values():  # warm-up every method at this size
            fn(crit)
        samples = {name: [] for name in methods}
        for _ in range(args.repeats):
            for name, fn in methods.items():  # interleaved so machine noise hits all methods alike
                t0 = time.perf_counter()
                fn(crit)
                samples[name].append((time.perf_counter() - t0) / n)
        row = {name: _pct(s) for name, s in samples.items()}
        base = row.get("hf_transformers_full_model") or row["full_pass_per_criterion"]
        for name in row:
            row[name]["speedup_vs_baseline_p50"] = base["p50_ms"] / row[name]["p50_ms"]
        results[f"{n}_criteria"] = row
        print(f"{n:>3} criteria per content, ms per decision (p50 / p95, speedup vs baseline):")
        for name, r in row.items():
            print(f"    {name:<30} {r['p50_ms']:8.1f} / {r['p95_ms']:8.1f}   x{r['speedup_vs_baseline_p50']:.2f}")
    report = {
        "bundle": str(clf.bundle_dir),
        "backbone": m.backbone.name,
        "extraction_layer": m.backbone.extraction_layer,
        "num_layers": m.backbone.num_layers,
        "template_order": m.template.order,
        "content_tokens": len(head_ids),
        "criterion_tokens": len(tail_ids),
        "threads": threads,
        "repeats": args.repeats,
        "int8_bundle": str(int8.bundle_dir) if int8 else None,
        "int8_graph_bytes": int8.manifest.quantization.get("int8_graph_bytes") if int8 else None,
        "fp32_graph_bytes": (clf.bundle_dir / m.graph.file).stat().st_size,
        "baseline": "hf_transformers_full_model" if torch_model is not None else "full_pass_per_criterion",
        "versions": _versions(),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"content {len(head_ids)} tokens, criterion ~{len(tail_ids)} tokens, {threads} threads; wrote {args.out}")


if __name__ == "__main__":
    main()
