"""The ``unspoken`` command. Runtime subcommands (classify, score, serve) never import torch; export subcommands
(export, train-head, data) are imported lazily and say which extra to install when it is missing."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Sequence

from .errors import InputError, MissingExtraError, UnspokenError

EXIT_USER_ERROR = 2


def _add_runtime_options(p: argparse.ArgumentParser, *, truncate: bool = True) -> None:
    p.add_argument("--bundle", type=Path, help="bundle folder (default: the default bundle, built on first use)")
    p.add_argument("--threads", type=int, help="ONNX Runtime threads (default: CPUs available to this process)")
    p.add_argument("--prefix-cache-mb", type=float, default=0, metavar="MiB",
                   help="keep prefilled KV of recent contents (content-first bundles), so a content scored again "
                        "skips its prefill (default 0: off)")
    if not truncate:  # serve: each request says whether to truncate ("truncate": true)
        return
    p.add_argument("--truncate", action="store_true",
                   help="cut content too long for the backbone to the beginning that fits (reported as "
                        '"truncated": true) instead of refusing it')


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unspoken", description=__doc__.split(".")[0] + ".")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("classify", help="score one text against one or more criteria; prints JSON")
    p.add_argument("text", help="the content to judge, or - to read it from standard input")
    p.add_argument("-c", "--criterion", action="append", required=True, help="a criterion (repeat for several)")
    _add_runtime_options(p)

    p = sub.add_parser("score", help="score a JSONL file of {id, content, criterion|criteria} rows")
    p.add_argument("--input", required=True, type=Path)
    p.add_argument("--output", required=True, type=Path, help="results, written and flushed row by row")
    p.add_argument("--resume", action="store_true",
                   help="keep the rows an interrupted run already wrote to --output and score only the rest")
    _add_runtime_options(p)

    p = sub.add_parser("serve", help="HTTP service with micro-batching and metrics (needs the serve extra)")
    _add_runtime_options(p, truncate=False)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    p.add_argument("--max-batch", type=int, default=16, help="items scored together at most (1: no batching)")
    p.add_argument("--max-wait-ms", type=float, default=5.0,
                   help="how long the oldest queued item waits for others to join its batch (default 5)")
    p.add_argument("--max-queue", type=int, default=256, help="items waiting at most; beyond it requests get 429")
    p.add_argument("--max-body-bytes", type=int, default=1 << 20, help="larger request bodies get 413 (default 1 MiB)")
    p.add_argument("--shutdown-timeout", type=float, default=30.0,
                   help="seconds in-flight requests may take to finish on SIGTERM (default 30)")
    p.add_argument("--access-log", action="store_true", help="log every request")
    p.add_argument("--openapi", type=Path, metavar="FILE", help="write the OpenAPI schema to FILE and exit")

    p = sub.add_parser("export", help="export a backbone + head into a bundle (needs the export extra)")
    p.add_argument("--backbone", default="smollm2-135m", help="smollm2-135m, gemma3-270m, an HF folder or a .gguf")
    p.add_argument("--head", type=Path, help="head folder (default: the shipped head for the default backbone)")
    p.add_argument("--lora", type=Path, help="LoRA adapter folder to merge before truncation")
    p.add_argument("--out", required=True, type=Path, help="bundle folder to write")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    p.add_argument("--quantize", choices=["int8"], help="ship an int8 graph with the head refit on int8 features")
    p.add_argument("--triples", type=Path, help="int8: triples the head is refit on (default: the shipped ones)")
    p.add_argument("--keep-fp32", nargs="*", metavar="PATTERN",
                   help="int8: module-name parts whose MatMuls stay fp32 (default: down_proj; none: quantize all)")
    p.add_argument("--max-auroc-drop", type=float,
                   help="int8: refuse a bundle whose validation AUROC is more than this below fp32 (default 0.01)")
    p.add_argument("--force", action="store_true", help="int8: write the bundle even if it fails the quality gate")

    p = sub.add_parser("train-head", help="fit and calibrate a head on triples (needs the export extra)")
    p.add_argument("--backbone", default="smollm2-135m")
    p.add_argument("--triples", required=True, type=Path, help="JSONL with criterion, content, label[, split]")
    p.add_argument("--out", required=True, type=Path, help="head folder to write")
    p.add_argument("--layer", type=int, help="extraction layer (default: round(0.7 * layers))")
    p.add_argument("--order", choices=["content-first", "criterion-first"], default="content-first")
    p.add_argument("--seed-cue", default="Assessment:")
    p.add_argument("--kind", choices=["mlp", "linear"], default="mlp")
    p.add_argument("--hidden", type=int, nargs="+", default=[256], help="MLP hidden layer sizes")
    p.add_argument("--alpha", type=float, default=1e-2, help="MLP L2 penalty")
    p.add_argument("--c", type=float, default=0.05, help="linear probe inverse L2 penalty")
    p.add_argument("--normalize", choices=["standard", "l2", "none"], default="standard",
                   help="feature normalisation before the head (l2: unit length, then standard)")
    p.add_argument("--chat", action="store_true", help="wrap the prompt in the backbone's chat template")
    p.add_argument("--lora", type=Path, help="LoRA adapter folder to merge first")

    p = sub.add_parser("train-lora", help="train the verdict LoRA on triples (needs the export extra)")
    p.add_argument("--backbone", default="smollm2-135m")
    p.add_argument("--triples", required=True, type=Path, help="JSONL with criterion, content, label, verdict")
    p.add_argument("--out", required=True, type=Path, help="adapter folder to write")
    p.add_argument("--order", choices=["content-first", "criterion-first"], default="content-first")
    p.add_argument("--seed-cue", default="Assessment:")
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--top-layer", type=int, help="put adapters only below this layer (e.g. the extraction layer)")
    p.add_argument("--lr", type=float, default=2e-4, help="learning rate")
    p.add_argument("--max-tokens", type=int, default=384, help="skip rows whose prompt+verdict is longer")
    p.add_argument("--seed-loss", type=float, default=0.0,
                   help="auxiliary variant: weight of a probe loss on the seed state at --top-layer (0 = off)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--fp32", action="store_true", help="train without bf16 autocast (slower)")
    p.add_argument("--decision-weight", type=float, default=1.0,
                   help="loss weight of the first verdict token (Yes/No), relative to the rest of the sentence")
    p.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")

    p = sub.add_parser("sweep-head", help="compare layers x head kinds on our validation split (export extra)")
    p.add_argument("--backbone", default="smollm2-135m")
    p.add_argument("--triples", required=True, type=Path)
    p.add_argument("--layers", type=int, nargs="+", required=True, help="extraction layers to compare")
    p.add_argument("--order", choices=["content-first", "criterion-first"], default="content-first")
    p.add_argument("--seed-cue", default="Assessment:")
    p.add_argument("--lora", type=Path, help="LoRA adapter folder to merge first")
    p.add_argument("--chat", action="store_true", help="wrap the prompt in the backbone's chat template")
    p.add_argument("--normalize", nargs="+", choices=["standard", "l2", "none"], default=["standard"],
                   help="feature normalisations to compare")
    p.add_argument("--kinds", nargs="+", choices=["linear", "mlp"], default=["linear", "mlp"],
                   help="head kinds to compare (linear: C 0.01/0.1/1; mlp: 64 and 256 hidden units)")
    p.add_argument("--out", type=Path, help="also write the table (markdown) and rows (JSON) here")

    p = sub.add_parser("eval", help="quality benchmark: bundles vs baselines on JSONL suites (needs the export extra)")
    p.add_argument("--suite", type=Path, nargs="+", help="JSONL files or folders (default: ../shared/eval/*.jsonl)")
    p.add_argument("--per-set", type=int, default=100, help="label-balanced rows drawn per set (0 = all)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--bundle", action="append", default=[], metavar="NAME=DIR",
                   help="a bundle to evaluate (repeat; default: the default bundle)")
    p.add_argument("--baselines", default="p_yes,embedding,judge",
                   help="comma list of p_yes, embedding, judge, or 'none'")
    p.add_argument("--backbone", default="smollm2-135m", help="backbone of the P(yes) and judge baselines")
    p.add_argument("--triples", type=Path, help="our triples (validation split calibrates the baselines; "
                   "test split is reported); default: the shipped heads/data/triples.jsonl")
    p.add_argument("--no-own-test", action="store_true", help="do not add our test split as a set")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/quality"), help="output folder")

    p = sub.add_parser("data", help="training-triples tools")
    data = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    d = data.add_parser("check", help="validate a triples JSONL: schema, balance, pairs, splits, uniqueness")
    d.add_argument("file", type=Path)
    return parser


def _read_text(arg: str) -> str:
    if arg != "-":
        return _argument(arg, "the text argument")
    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8-sig")  # a leading byte-order mark is dropped, not scored
    except UnicodeDecodeError as e:
        raise InputError(f"standard input is not valid UTF-8 (byte {e.start})") from None


def _argument(value: str, what: str) -> str:
    """Refuse a command-line argument that was not UTF-8 (Python hands such bytes over as lone surrogates)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        try:
            os.fsencode(value).decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputError(f"{what} is not valid UTF-8 (byte {e.start})") from None
        except UnicodeEncodeError:
            pass  # not from undecodable bytes: the classifier names the lone surrogate
    return value


def _classifier(args):
    from .classifier import Classifier

    return Classifier(args.bundle, threads=args.threads, prefix_cache_mb=args.prefix_cache_mb)


def cmd_classify(args) -> int:
    text = _read_text(args.text)
    criteria = [_argument(c, f"criterion {i + 1} (-c)") for i, c in enumerate(args.criterion)]
    scored = _classifier(args).score_detailed(text, criteria, truncate=args.truncate)
    results = [{"criterion": c, "probability": round(p, 6)} for c, p in zip(criteria, scored.probabilities)]
    print(json.dumps({"results": results, "truncated": scored.truncated}, ensure_ascii=False, indent=2))
    return 0


def cmd_score(args) -> int:
    from .batch import score_jsonl

    stats = score_jsonl(lambda: _classifier(args), args.input, args.output, resume=args.resume,
                        truncate=args.truncate)
    kept = f" ({stats.kept} kept from an earlier run)" if stats.kept else ""
    print(f"unspoken: {stats.total} rows in {args.output}{kept}", file=sys.stderr)
    return 0


def cmd_serve(args) -> int:
    from .serve.config import ServeConfig

    config = ServeConfig(
        bundle=args.bundle, threads=args.threads, host=args.host, port=args.port, max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms, max_queue=args.max_queue, max_body_bytes=args.max_body_bytes,
        shutdown_timeout_s=args.shutdown_timeout, access_log=args.access_log, prefix_cache_mb=args.prefix_cache_mb,
    )
    try:
        from .serve import server
    except ImportError as e:
        raise MissingExtraError(
            f"this command needs the serve extra ({e.name} is missing): pip install 'unspoken[serve]'"
        ) from None
    if args.openapi is not None:
        print(f"unspoken: wrote {server.write_openapi(args.openapi)}", file=sys.stderr)
        return 0
    return server.run(config)


def _export_cli():
    try:
        from unspoken.export import cli as export_cli
    except ImportError as e:
        raise MissingExtraError(
            f"this command needs the export extra ({e.name} is missing): pip install 'unspoken[export]'"
        ) from None
    return export_cli


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {
        "classify": cmd_classify,
        "score": cmd_score,
        "serve": cmd_serve,
        "export": lambda a: _export_cli().cmd_export(a),
        "train-head": lambda a: _export_cli().cmd_train_head(a),
        "train-lora": lambda a: _export_cli().cmd_train_lora(a),
        "data": lambda a: _export_cli().cmd_data_check(a),
        "eval": lambda a: _export_cli().cmd_eval(a),
        "sweep-head": lambda a: _export_cli().cmd_sweep_head(a),
    }
    try:
        return handlers[args.command](args)
    except UnspokenError as e:
        print(f"unspoken: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
