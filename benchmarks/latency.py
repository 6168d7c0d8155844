"""Latency per decision: unspoken's runtime paths against the alternatives, in one interleaved run.

    python benchmarks/latency.py                       # the default bundle and its int8 variant (built on first use)
    python benchmarks/latency.py --quick               # a smaller grid, for a first look (about a minute)

Grid: content lengths {64, 256, 1024} tokens x criteria per content {1, 4, 16, 64}, plus the cell the targets name
(300-token content, 20 criteria). Methods, all on the same backbone, contents and criteria:

  hf_full_model            (a) transformers full model in torch, one forward per (content, criterion) pair
  generation_judge         (b) the same model generating an answer (greedy, at most 16 new tokens) per pair
  criterion_first          (c) unspoken runtime, one full pass per pair (what a criterion-first bundle runs:
                               prompts batched in right-padded passes of ``chunk_size``; cost is order-independent)
  content_first            (d) unspoken runtime, content prefilled once, criteria as batched KV continuations
  content_first_kv_hit         (d) with the content already in the prefix cache (continuations only)
  int8_content_first           (d) on the int8 bundle
  int8_content_first_kv_hit    (d) on the int8 bundle, prefix-cache hit

Per-pair methods ((a), (b)) cost the same per decision whatever the number of criteria, so they are timed on
``--pair-repeats`` single pairs per content length and reported for every criteria count; (c) is timed on at most
``--max-full-pass-criteria`` criteria per cell (its cost per decision does not fall with more). Methods are
interleaved within each cell, so machine noise hits all alike; the report gives p50/p95 ms per decision and ratios
to (a) from the same run. It also measures the matmul rate (ONNX Runtime, same threads) and gives the FLOP lower
bound and % attainment of the fp32 prefill; and cold start and peak RSS of a fresh process that imports the
runtime, loads the bundle and scores once (page cache warm); and the throughput of ``score_many`` over many
contents (prefilled together) against one call per content. Versions, threads and token counts are recorded.
Output: JSON, a markdown table and a PNG plot in ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
CONTENT = (  # a 118-token review (SmolLM2 tokenizer); serve_load.py uses it too
    "Order #4417 arrived two days late and the box was dented, which annoyed me at first. I used to hate this brand "
    "because their last blender broke within a month, but the support team replaced it without any fuss and this "
    "new model is quiet, powerful and easy to clean. Honestly, now I love it and I've already recommended it to my "
    "sister. The only remaining gripe is the short power cord, which barely reaches the outlet behind my counter. "
    "Would I buy it again? Yes, probably, though I'd wait for a sale."
)
PASSAGE = CONTENT + (  # repeated and cut to each content length of the grid
    " The manual was thin but clear, the jug is "
    "dishwasher safe, and the lid locks with a satisfying click. My neighbour, who runs a small cafe, tried a "
    "smoothie and asked where I got it. We compared it with her commercial machine: hers is louder and twice the "
    "price, and mine crushed ice just as well. Last week the motor smelled hot after a long run with frozen fruit, "
    "so I now let it rest between batches, as the leaflet suggests. "
)
BASE_CRITERIA = [
    "The writer currently likes the product.", "The writer asks for a refund.", "The delivery was on time.",
    "The writer recommends the product to someone else.", "The text mentions a problem with the power cord.",
    "The writer is a professional chef.", "The message contains a threat.", "The review is mostly negative.",
    "The writer contacted customer support.", "The text is written in French.",
    "The writer would buy the product again.", "The product is a vacuum cleaner.",
    "The writer's sister bought the product.", "The previous product from this brand broke.",
    "The writer is sarcastic.", "The box was damaged.",
]
FRAMES = ["{}", "According to the text, {}", "It is stated or clearly implied that {}", "A careful reader would say {}"]
CRITERIA = [f.format(c[0].lower() + c[1:] if i else c) for i, f in enumerate(FRAMES) for c in BASE_CRITERIA]
TARGET_CELL = (300, 20)
JUDGE_NEW_TOKENS = 16


def _versions() -> dict:
    out = {"python": platform.python_version(), "machine": platform.machine(), "processor": platform.processor()}
    for pkg in ("unspoken", "onnxruntime", "numpy", "tokenizers", "torch", "transformers"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def _stats(seconds: list[float], decisions: int) -> dict:
    a = np.asarray(seconds) * 1000 / decisions
    return {"p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)), "samples": len(a)}


def content_of(clf, tokens: int) -> tuple[str, int]:
    """The longest prefix of a repeated passage whose content segment is at most ``tokens`` tokens."""
    words = (PASSAGE * (tokens // 60 + 2)).split()
    lo, hi = 1, len(words)
    while lo < hi:  # binary search on the word count
        mid = (lo + hi + 1) // 2
        if len(clf.tokenizer.content_ids(clf.template, " ".join(words[:mid]))) <= tokens:
            lo = mid
        else:
            hi = mid - 1
    text = " ".join(words[:lo])
    return text, len(clf.tokenizer.content_ids(clf.template, text))


def matmul_rate(threads: int, m: int, k: int, n: int, repeats: int = 20) -> float:
    """FLOP/s of one float32 MatMul [m, k] x [k, n] in ONNX Runtime with ``threads`` threads (best of repeats)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "mm",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])], initializer=[w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    x = rng.standard_normal((m, k)).astype(np.float32)
    sess.run(None, {"x": x})
    best = min(_timed(lambda: sess.run(None, {"x": x})) for _ in range(repeats))
    return 2.0 * m * k * n / best


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def flops(cfg, layers: int, tokens: int, past: int = 0) -> float:
    """Matmul FLOPs of ``tokens`` new tokens through ``layers`` decoder layers with ``past`` cached tokens
    (projections and MLP, plus attention scores and values over past + new keys, as the graph computes them)."""
    h = int(cfg.hidden_size)
    heads = int(cfg.num_attention_heads)
    hd = int(getattr(cfg, "head_dim", None) or h // heads)
    kv = int(getattr(cfg, "num_key_value_heads", None) or heads)
    inter = int(cfg.intermediate_size)
    params = h * heads * hd * 2 + h * kv * hd * 2 + 3 * h * inter
    attention = 2 * 2 * tokens * (past + tokens) * heads * hd
    return float(layers * (2 * params * tokens + attention))


def cold_start(bundle: Path, threads: int, runs: int) -> dict:
    """Import + load + first score in a fresh process (median of runs) and that process's peak RSS."""
    code = (
        "import time; t0 = time.perf_counter()\n"
        "from unspoken.runtime import Classifier\n"
        f"clf = Classifier({str(bundle)!r}, threads={threads})\n"
        "t1 = time.perf_counter()\n"
        "clf.score('I used to hate it, now I love it.', ['The writer likes it.', 'It is about cars.'])\n"
        "t2 = time.perf_counter()\n"
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork + exec from this (large) parent process
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
        "import sys; print(t1 - t0, t2 - t0, int(hwm) / 1024, 'torch' in sys.modules)\n"
    )
    rows = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        load, first, rss, torch_loaded = out.stdout.split()
        rows.append((float(load), float(first), float(rss), torch_loaded == "True"))
    loads, firsts, rss, torch_loaded = zip(*rows)
    return {"import_and_load_s": float(np.median(loads)), "cold_start_s": float(np.median(firsts)),
            "peak_rss_mib": float(np.median(rss)), "runs": runs, "torch_imported": any(torch_loaded)}


class Torch:
    """The torch baselines: (a) full-model forward per pair and (b) greedy generation per pair."""

    def __init__(self, clf, threads: int) -> None:
        import torch

        from unspoken.export.backbones import load_backbone
        from unspoken.export.evaluate import GenerationJudge

        torch.set_num_threads(threads)
        self.torch = torch
        self.clf = clf
        self.bb = load_backbone(clf.manifest.backbone.name, attn_implementation="sdpa", progress=False)
        self.judge_prompts = GenerationJudge(self.bb, batch=1, max_new_tokens=JUDGE_NEW_TOKENS)  # eval's judge prompt
        self.tok = self.judge_prompts.tok
        self.generated: list[int] = []

    def full_forward(self, content: str, criterion: str) -> None:
        head, tail = self.clf.tokenizer.prompt_ids(self.clf.template, content, criterion)
        with self.torch.inference_mode():
            self.bb.model(self.torch.tensor([head + tail]))

    def judge_prompt(self, content: str, criterion: str) -> list[int]:
        text = self.judge_prompts.prompt({"content": content, "criterion": criterion})
        return self.tok(text, add_special_tokens=False).input_ids

    def judge(self, ids: list[int]) -> None:
        with self.torch.inference_mode():
            x = self.torch.tensor([ids])
            out = self.bb.model.generate(x, attention_mask=self.torch.ones_like(x), max_new_tokens=JUDGE_NEW_TOKENS,
                                         do_sample=False, pad_token_id=self.tok.eos_token_id)
        self.generated.append(int(out.shape[1] - len(ids)))


def measure_cell(methods: dict, repeats: int) -> dict[str, list[float]]:
    for fn in methods.values():  # warm-up at this size
        fn()
    samples = {name: [] for name in methods}
    for _ in range(repeats):
        for name, fn in methods.items():  # interleaved
            samples[name].append(_timed(fn))
    return samples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", type=Path, help="fp32 bundle (default: the default bundle)")
    ap.add_argument("--int8-bundle", type=Path, help="int8 bundle (default: the default bundle's int8 variant, built "
                                                     "on first use); --no-int8 skips it")
    ap.add_argument("--no-int8", action="store_true")
    ap.add_argument("--no-torch", action="store_true", help="skip the torch baselines (a) and (b)")
    ap.add_argument("--lengths", type=int, nargs="+", default=[64, 256, 1024], help="content tokens")
    ap.add_argument("--criteria", type=int, nargs="+", default=[1, 4, 16, 64], help="criteria per content")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats per cell of the runtime methods")
    ap.add_argument("--pair-repeats", type=int, default=3, help="timed single pairs per length for (a) and (b)")
    ap.add_argument("--max-full-pass-criteria", type=int, default=16)
    ap.add_argument("--cold-runs", type=int, default=3)
    ap.add_argument("--threads", type=int, help="threads for ONNX Runtime and torch (default: CPUs available)")
    ap.add_argument("--quick", action="store_true", help="lengths 64 256, criteria 1 16, 3 repeats, 1 pair")
    ap.add_argument("--no-target-cell", action="store_true", help="skip the extra 300-token, 20-criteria cell")
    ap.add_argument("--out", type=Path, default=RESULTS / "latency.json")
    args = ap.parse_args()
    if args.quick:
        args.lengths, args.criteria, args.repeats, args.pair_repeats, args.cold_runs = [64, 256], [1, 16], 3, 1, 1
    if min(args.lengths + args.criteria + [args.repeats, args.pair_repeats]) < 1:
        ap.error("lengths, criteria and repeats must be at least 1")

    from unspoken.runtime import Classifier
    from unspoken.runtime.default_bundle import ensure_default_bundle
    from unspoken.runtime.session import available_cpus

    threads = args.threads or available_cpus()
    bundle = args.bundle or ensure_default_bundle()
    cache_mb = 512
    clf = Classifier(bundle, threads=threads)
    clf_kv = Classifier(bundle, threads=threads, prefix_cache_mb=cache_mb)
    m = clf.manifest
    if not clf.template.cacheable:
        ap.error(f"{bundle} is criterion-first; the benchmark needs a content-first bundle for method (d)")
    int8 = None
    if not args.no_int8:
        int8_dir = args.int8_bundle or ensure_default_bundle(quantize="int8")
        int8 = Classifier(int8_dir, threads=threads)
        int8_kv = Classifier(int8_dir, threads=threads, prefix_cache_mb=cache_mb)
        if not int8.manifest.quantization:
            ap.error(f"{int8_dir} is not an int8 bundle (its manifest has no quantization record)")
        if int8.template.sha256 != m.template.sha256:
            ap.error("the int8 bundle's prompt template differs from the fp32 bundle's; timings would not compare")
    torch_side = None if args.no_torch else Torch(clf, threads)

    rate = matmul_rate(threads, 1024, m.backbone.hidden_size, 4 * m.backbone.hidden_size)
    cfg = torch_side.bb.config if torch_side else None
    layers = m.backbone.extraction_layer
    cells = [(n, k) for n in args.lengths for k in args.criteria]
    if TARGET_CELL not in cells and not args.no_target_cell:
        cells.append(TARGET_CELL)
    criterion_tokens = [len(t) for t in clf.tokenizer.criterion_ids_many(clf.template, CRITERIA)]
    report_cells, per_pair = [], {}
    for n_tokens in sorted({n for n, _ in cells}):
        content, real_tokens = content_of(clf, n_tokens)
        pair = (content, CRITERIA[0])
        # (a), (b): per pair, independent of the number of criteria
        if torch_side:
            judge_ids = torch_side.judge_prompt(*pair)
            torch_side.generated.clear()
            s = measure_cell({"hf_full_model": lambda: torch_side.full_forward(*pair),
                              "generation_judge": lambda: torch_side.judge(judge_ids)}, args.pair_repeats)
            per_pair[n_tokens] = {name: _stats(v, 1) for name, v in s.items()}
            per_pair[n_tokens]["generation_judge"]["prompt_tokens"] = len(judge_ids)
            per_pair[n_tokens]["generation_judge"]["mean_new_tokens"] = float(np.mean(torch_side.generated))
        # prefill alone, for the roofline
        ids = np.asarray([clf.tokenizer.content_ids(clf.template, content)], dtype=np.int64)
        g = clf.graph
        prefill = measure_cell({"prefill": lambda: g.run(ids, np.ones_like(ids), np.arange(ids.shape[1])[None],
                                                           g.empty_past(1), present_slot="prefill")},
                               args.repeats)["prefill"]
        for n, k in [c for c in cells if c[0] == n_tokens]:
            crit = (CRITERIA * (k // len(CRITERIA) + 1))[:k]
            full_k = min(k, args.max_full_pass_criteria)
            # (d) is the production call, score(); with one criterion it runs one full pass (cheaper than prefill +
            # continuation), unless the prefix cache is on: then the content's KV is cached and reused.
            methods = {
                "criterion_first": lambda: clf.features(content, crit[:full_k], use_cache=False),
                "content_first": lambda: clf.score(content, crit),
                "content_first_kv_hit": lambda: clf_kv.score(content, crit),
            }
            if int8:
                methods["int8_content_first"] = lambda: int8.score(content, crit)
                methods["int8_content_first_kv_hit"] = lambda: int8_kv.score(content, crit)
            s = measure_cell(methods, args.repeats)
            row = {name: _stats(v, full_k if name == "criterion_first" else k) for name, v in s.items()}
            row["criterion_first"]["criteria_timed"] = full_k
            row.update(per_pair.get(n, {}))
            base = row.get("hf_full_model")
            for name, r in row.items():
                if base:
                    r["speedup_vs_hf_full_model"] = base["p50_ms"] / r["p50_ms"]
            mean_crit = float(np.mean([criterion_tokens[i % len(CRITERIA)] for i in range(k)]))
            cell = {"content_tokens": real_tokens, "criteria": k, "mean_criterion_tokens": mean_crit, "methods": row}
            if cfg is not None:
                prefill_flops = flops(cfg, layers, real_tokens)
                cont = sum(flops(cfg, layers, criterion_tokens[i % len(CRITERIA)], real_tokens) for i in range(k))
                bound_ms = (prefill_flops + cont) / rate * 1000 / k
                cell["flop_bound_ms_per_decision"] = bound_ms
                cell["attainment_content_first"] = bound_ms / row["content_first"]["p50_ms"]
                p50_prefill = float(np.percentile(prefill, 50))
                cell["prefill"] = {"p50_ms": p50_prefill * 1000, "flop_bound_ms": prefill_flops / rate * 1000,
                                   "attainment": prefill_flops / rate / p50_prefill}
            report_cells.append(cell)
            _print_cell(cell)

    throughput = many_contents(clf, args.repeats)
    print(f"many contents: {json.dumps(throughput)}")
    report = {
        "bundle": str(clf.bundle_dir),
        "int8_bundle": str(int8.bundle_dir) if int8 else None,
        "backbone": m.backbone.name,
        "extraction_layer": layers,
        "num_layers": m.backbone.num_layers,
        "threads": threads,
        "repeats": args.repeats,
        "pair_repeats": args.pair_repeats,
        "matmul_rate_gflops": rate / 1e9,
        "matmul_shape": [1024, m.backbone.hidden_size, 4 * m.backbone.hidden_size],
        "judge_max_new_tokens": JUDGE_NEW_TOKENS,
        "chunk_size": clf.chunk_size,
        "graph_bytes": {"fp32": (clf.bundle_dir / m.graph.file).stat().st_size,
                        "int8": (int8.bundle_dir / int8.manifest.graph.file).stat().st_size if int8 else None},
        "cold_start": {"fp32": cold_start(clf.bundle_dir, threads, args.cold_runs),
                       "int8": cold_start(int8.bundle_dir, threads, args.cold_runs) if int8 else None},
        "versions": _versions(),
        "cells": report_cells,
        "many_contents": throughput,
    }
    report["targets"] = targets(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    table = render_table(report)
    args.out.with_suffix(".md").write_text(table)
    plot(report, args.out.with_suffix(".png"))
    print(table)
    print(f"wrote {args.out}, {args.out.with_suffix('.md')}, {args.out.with_suffix('.png')}")


def many_contents(clf, repeats: int, contents: int = 16, tokens: int = 64, criteria: int = 4) -> dict:
    """Throughput of ``score_many`` (contents prefilled together, continuations mixed) against one ``score`` call
    per content, on distinct contents of about ``tokens`` tokens with ``criteria`` criteria each."""
    base, _ = content_of(clf, tokens - 4)
    items = [(f"({i}) {base}", CRITERIA[i % 8 : i % 8 + criteria]) for i in range(contents)]
    samples = measure_cell({"one_content_per_call": lambda: [clf.score(c, k) for c, k in items],
                            "score_many": lambda: clf.score_many(items)}, repeats)
    decisions = contents * criteria
    out = {name: {"decisions_per_s": decisions / float(np.percentile(v, 50)), "samples": len(v)}
           for name, v in samples.items()}
    out["score_many_speedup"] = out["score_many"]["decisions_per_s"] / out["one_content_per_call"]["decisions_per_s"]
    out.update({"contents": contents, "content_tokens": tokens, "criteria_per_content": criteria})
    return out


def _find(report: dict, n: int, k: int) -> dict | None:
    for c in report["cells"]:
        if c["criteria"] == k and abs(c["content_tokens"] - n) <= 2:
            return c
    return None


def targets(report: dict) -> dict:
    """Each target of the speed issue next to the measured figure (None where this run did not measure it)."""
    out = {}
    cell = _find(report, *TARGET_CELL)
    if cell:
        r = cell["methods"]
        d = r["content_first"]["p50_ms"]
        out["20 criteria, 300 tokens: content_first vs criterion_first (>= 8x)"] = r["criterion_first"]["p50_ms"] / d
        if "hf_full_model" in r:
            out["20 criteria, 300 tokens: content_first vs hf_full_model (>= 12x)"] = r["hf_full_model"]["p50_ms"] / d
            out["20 criteria, 300 tokens: content_first vs generation_judge (>= 20x)"] = (
                r["generation_judge"]["p50_ms"] / d)
        out["per criterion on cached content, fp32 p50 ms (<= 45)"] = r["content_first_kv_hit"]["p50_ms"]
        if "int8_content_first_kv_hit" in r:
            out["per criterion on cached content, int8 p50 ms (<= 25)"] = r["int8_content_first_kv_hit"]["p50_ms"]
    prefills = [c["prefill"]["attainment"] for c in report["cells"] if "prefill" in c]
    if prefills:
        out["fp32 prefill attainment of the matmul roofline, min over lengths (>= 0.80)"] = min(prefills)
        out["fp32 prefill attainment of the matmul roofline, max over lengths (>= 0.80)"] = max(prefills)
    cold = report["cold_start"]["fp32"]
    out["default bundle peak RSS MiB (<= 600)"] = cold["peak_rss_mib"]
    out["default bundle cold start s: import + load + first score (<= 3)"] = cold["cold_start_s"]
    return out


def _print_cell(cell: dict) -> None:
    print(f"{cell['content_tokens']:>5} content tokens, {cell['criteria']:>3} criteria: ms per decision p50 "
          f"(x vs hf_full_model)")
    for name, r in cell["methods"].items():
        ratio = f"x{r['speedup_vs_hf_full_model']:.1f}" if "speedup_vs_hf_full_model" in r else ""
        print(f"    {name:<28} {r['p50_ms']:9.1f}  {ratio}")


ORDER = ["hf_full_model", "generation_judge", "criterion_first", "content_first", "content_first_kv_hit",
         "int8_content_first", "int8_content_first_kv_hit"]


def render_table(report: dict) -> str:
    names = [n for n in ORDER if any(n in c["methods"] for c in report["cells"])]
    lines = [
        f"Latency per decision, ms p50 (p95), {report['backbone']} layer {report['extraction_layer']}/"
        f"{report['num_layers']}, {report['threads']} threads; ratio to hf_full_model in brackets.",
        "",
        "| content tokens | criteria | " + " | ".join(names) + " | FLOP bound | attainment (d) |",
        "|---|---|" + "---|" * len(names) + "---|---|",
    ]
    for c in report["cells"]:
        cols = []
        for n in names:
            r = c["methods"].get(n)
            if r is None:
                cols.append("–")
                continue
            ratio = f" [x{r['speedup_vs_hf_full_model']:.1f}]" if "speedup_vs_hf_full_model" in r else ""
            cols.append(f"{r['p50_ms']:.1f} ({r['p95_ms']:.1f}){ratio}")
        bound = f"{c['flop_bound_ms_per_decision']:.1f}" if "flop_bound_ms_per_decision" in c else "–"
        att = f"{100 * c['attainment_content_first']:.0f}%" if "attainment_content_first" in c else "–"
        lines.append(f"| {c['content_tokens']} | {c['criteria']} | " + " | ".join(cols) + f" | {bound} | {att} |")
    lines += ["", "| target | measured |", "|---|---|"]
    for name, value in report["targets"].items():
        lines.append(f"| {name} | {value:.2f} |")
    cold = report["cold_start"]
    mc = report.get("many_contents")
    if mc:
        lines += ["", f"Many contents ({mc['contents']} contents of ~{mc['content_tokens']} tokens, "
                      f"{mc['criteria_per_content']} criteria each): score_many "
                      f"{mc['score_many']['decisions_per_s']:.0f} decisions/s vs one call per content "
                      f"{mc['one_content_per_call']['decisions_per_s']:.0f} (x{mc['score_many_speedup']:.2f})."]
    lines += ["", f"Matmul rate {report['matmul_rate_gflops']:.1f} GFLOP/s (ONNX Runtime, {report['threads']} threads, "
              f"{'x'.join(map(str, report['matmul_shape']))}). Cold start (fresh process: import, load, first score; "
              f"page cache warm) and peak RSS: fp32 {cold['fp32']['cold_start_s']:.2f} s, "
              f"{cold['fp32']['peak_rss_mib']:.0f} MiB"
              + (f"; int8 {cold['int8']['cold_start_s']:.2f} s, {cold['int8']['peak_rss_mib']:.0f} MiB"
                 if cold.get("int8") else "") + "."]
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot skipped: matplotlib is not installed (it comes with the export extra)")
        return
    counts: dict[int, int] = {}
    for c in report["cells"]:
        counts[c["content_tokens"]] = counts.get(c["content_tokens"], 0) + 1
    lengths = sorted(n for n, count in counts.items() if count > 1) or sorted(counts)  # the target cell stands alone
    fig, axes = plt.subplots(1, len(lengths), figsize=(4.2 * len(lengths), 4.4), sharey=True, squeeze=False)
    for ax, n in zip(axes[0], lengths):
        cells = sorted((c for c in report["cells"] if c["content_tokens"] == n), key=lambda c: c["criteria"])
        for name in ORDER:
            pts = [(c["criteria"], c["methods"][name]["p50_ms"]) for c in cells if name in c["methods"]]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=name)
        bound = [(c["criteria"], c["flop_bound_ms_per_decision"]) for c in cells if "flop_bound_ms_per_decision" in c]
        if bound:
            ax.plot(*zip(*bound), linestyle="--", color="gray", label="FLOP bound (d)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(f"{n}-token content")
        ax.set_xlabel("criteria per content")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("ms per decision (p50)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle(f"{report['backbone']} L{report['extraction_layer']}, {report['threads']} threads", fontsize=10)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
