"""int8 bundles: quantize the truncated graph, refit the head on the features the int8 graph gives, gate on quality.

Dynamic int8 (ONNX Runtime ``quantize_dynamic``: int8 weights per output channel, activations quantized per tensor
at run time) shifts the seed-token state (cosine to fp32 about 0.99 on SmolLM2; 0.997 with the MLP down projections
kept in fp32), so the fp32 head is not reused. The head's recorded config is refit on features the int8 graph
produces through the runtime's own ``Classifier`` (exactly what serving computes), calibrated on the validation
split, and compared with the fp32 head on the same split; an int8 head more than ``max_auroc_drop`` below is refused
unless forced.

The MatMuls kept in fp32 are found by weight, not by name: the dynamo exporter names nodes ``node_linear_6`` and
weights ``val_91``, so every torch ``Linear`` whose module name contains a ``keep_fp32`` pattern is located in the
graph by the bytes of its (transposed) weight.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Sequence

import numpy as np

from unspoken.runtime.errors import InputError, UnspokenError

from . import metrics
from .train_head import HeadConfig

INT8_SCHEME = "onnxruntime-dynamic-int8"
WEIGHT_TYPES = ("QInt8", "QUInt8")
OP_TYPES = ("MatMul", "Gemm", "Gather")


class QualityGateError(UnspokenError):
    """The int8 head's validation AUROC falls further below the fp32 head's than allowed."""


@dataclass(frozen=True)
class QuantizeSettings:
    """How the graph is quantized and how much validation AUROC the int8 bundle may lose."""

    per_channel: bool = True
    weight_type: str = "QInt8"
    op_types: tuple[str, ...] = ("MatMul", "Gather")  # Gather: the embedding table
    keep_fp32: tuple[str, ...] = ("down_proj",)  # torch module-name substrings whose MatMuls stay fp32
    reduce_range: bool = False
    max_auroc_drop: float = 0.01  # refuse an int8 head more than this below fp32 (validation AUROC)
    cosine_rows: int = 128  # validation rows compared with torch fp32 features when the head card has the metrics

    def __post_init__(self) -> None:
        if self.weight_type not in WEIGHT_TYPES:
            raise InputError(f"weight type {self.weight_type!r} is not known; available: {', '.join(WEIGHT_TYPES)}")
        unknown = sorted(set(self.op_types) - set(OP_TYPES))
        if unknown or not self.op_types:
            raise InputError(f"op types to quantize must be some of {', '.join(OP_TYPES)}, got {list(self.op_types)}")
        if any(not isinstance(p, str) or not p.strip() for p in self.keep_fp32):
            raise InputError("keep_fp32 patterns must be non-empty strings (module-name parts, e.g. 'down_proj')")
        if not math.isfinite(self.max_auroc_drop):
            raise InputError("max_auroc_drop must be a finite number")
        if self.cosine_rows < 1:
            raise InputError("cosine_rows must be at least 1")

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class KeptMatMul:
    """A graph node left in fp32, with the torch module whose weight it multiplies."""

    node: str
    module: str
    weight: str  # the initializer's name in the graph


def _weight_key(matrix: np.ndarray) -> tuple:
    a = np.ascontiguousarray(matrix, dtype=np.float32)
    return a.shape, hashlib.sha256(a.tobytes()).hexdigest()


def linear_weights(decoder, patterns: Sequence[str]) -> dict[str, np.ndarray]:
    """{module name: weight as [in, out]} of every ``nn.Linear`` whose qualified name contains one of ``patterns``.

    Raises InputError naming a pattern that matches no Linear, with the Linear names it could have used."""
    import torch

    linears = {name: m for name, m in decoder.named_modules() if isinstance(m, torch.nn.Linear)}
    out = {}
    for pattern in patterns:
        hits = {name: m for name, m in linears.items() if pattern in name}
        if not hits:
            leaves = sorted({name.rsplit(".", 1)[-1] for name in linears})
            raise InputError(
                f"keep-fp32 pattern {pattern!r} matches no Linear module of this backbone; its Linear modules end in "
                f"{', '.join(leaves)}"
            )
        for name, m in hits.items():
            out[name] = m.weight.detach().float().T.contiguous().numpy()
    return out


def find_matmuls(model, weights: dict[str, np.ndarray]) -> list[KeptMatMul]:
    """The MatMul/Gemm nodes of ``model`` (an onnx ModelProto) whose constant operand equals one of ``weights``.

    The weight may feed the node directly (the exporter folds the transpose) or through a Transpose; Gemm's transB
    is honoured. Raises UnspokenError for a module whose weight no node reads."""
    from onnx import numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    wanted = {}
    for module, w in weights.items():
        wanted.setdefault(_weight_key(w), []).append(module)
    shapes = {key[0] for key in wanted}

    def as_in_out(node) -> tuple[str, np.ndarray] | None:
        if len(node.input) < 2:
            return None
        name = node.input[1]
        transpose = False
        if name not in inits and name in producer and producer[name].op_type == "Transpose":
            t = producer[name]
            perm = next((list(a.ints) for a in t.attribute if a.name == "perm"), [1, 0])
            if perm != [1, 0]:
                return None
            name, transpose = t.input[0], True
        if name not in inits:
            return None
        if node.op_type == "Gemm":
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            transpose = transpose != bool(trans_b)
        dims = tuple(inits[name].dims)
        if len(dims) != 2 or (dims[::-1] if transpose else dims) not in shapes:
            return None
        arr = numpy_helper.to_array(inits[name])
        return name, (arr.T if transpose else arr)

    found, seen_modules = [], set()
    for node in graph.node:
        if node.op_type not in ("MatMul", "Gemm"):
            continue
        resolved = as_in_out(node)
        if resolved is None:
            continue
        init_name, matrix = resolved
        for module in wanted.get(_weight_key(matrix), []):
            if not node.name:
                raise UnspokenError(f"the graph node reading {module}'s weight has no name, so it cannot be excluded")
            found.append(KeptMatMul(node.name, module, init_name))
            seen_modules.add(module)
    missing = sorted(set(weights) - seen_modules)
    if missing:
        raise UnspokenError(
            f"no MatMul in the exported graph reads the weight of {missing[0]}"
            f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}; cannot keep it in fp32"
        )
    return sorted(found, key=lambda k: k.node)


def quantize_graph(src: Path, dst: Path, keep: Sequence[KeptMatMul], settings: QuantizeSettings) -> dict:
    """Dynamic int8 quantization of ``src`` into ``dst``, leaving ``keep`` in fp32. Returns the integer op counts."""
    from collections import Counter

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()  # the quantizer warns on the root logger ("consider pre-processing")
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(
            src, dst,
            op_types_to_quantize=list(settings.op_types),
            per_channel=settings.per_channel,
            reduce_range=settings.reduce_range,
            weight_type=QuantType[settings.weight_type],
            nodes_to_exclude=[k.node for k in keep],
            use_external_data_format=src.stat().st_size > 1_500_000_000,
        )
    finally:
        root.setLevel(level)
    ops = Counter(n.op_type for n in onnx.load(str(dst), load_external_data=False).graph.node)
    integer = ("MatMulInteger", "DynamicQuantizeMatMul", "DynamicQuantizeLinear", "DequantizeLinear",
               "MatMulIntegerToFloat")
    return {op: ops[op] for op in integer if ops.get(op)} | {"MatMul (float)": ops.get("MatMul", 0)}


def runtime_features(bundle_dir: Path, rows: Sequence[dict], *, threads: int | None = None, progress: bool = True,
                     desc: str = "int8 features") -> np.ndarray:
    """Seed-token features [n, hidden] of ``rows`` through the runtime's Classifier on ``bundle_dir``.

    Rows that share a content are scored in one ``features`` call, as serving would score that content with those
    criteria (content-first: one prefill, batched continuations). Rows of different contents are not padded into
    one batch: int8 activations are quantized per tensor, so a row's features depend a little on its batch."""
    from tqdm.auto import tqdm

    from unspoken.runtime.classifier import Classifier

    clf = Classifier(bundle_dir, threads=threads)
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(r["content"], []).append(i)
    out = np.empty((len(rows), clf.manifest.backbone.hidden_size), dtype=np.float32)
    bar = tqdm(total=len(rows), desc=desc, unit="row", disable=not progress)
    for content, idx in groups.items():
        try:
            out[idx] = clf.features(content, [rows[i]["criterion"] for i in idx])
        except InputError as e:
            raise InputError(f"triples row {rows[idx[0]].get('id', idx[0])!r}: {e}") from None
        bar.update(len(idx))
    bar.close()
    return out


def head_config_from_card(card: dict) -> tuple[HeadConfig, str]:
    """The head's recorded training config, or the defaults of its kind when the card records none."""
    recorded = card.get("training", {}).get("config")
    if recorded:
        names = {f.name for f in fields(HeadConfig)}
        kwargs = {k: (tuple(v) if k == "hidden" else v) for k, v in recorded.items() if k in names}
        return HeadConfig(**kwargs), "head card"
    kind = card.get("kind", "mlp")
    return HeadConfig(kind=kind), f"defaults for kind {kind!r} (no config in the head card)"


def cosine_summary(a: np.ndarray, b: np.ndarray) -> dict:
    """Row-wise cosine between two feature matrices: mean, min and row count."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    cos = (a64 * b64).sum(1) / np.maximum(np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1), 1e-30)
    return {"mean": float(cos.mean()), "min": float(cos.min()), "rows": int(len(cos))}


def fp32_reference(bb, template, layer: int, rows: Sequence[dict], card: dict, head_file: Path, triples_sha256: str,
                   *, cosine_rows: int, progress: bool = True) -> tuple[dict, np.ndarray, np.ndarray]:
    """The fp32 head's validation/test figures on ``rows`` and torch fp32 features to compare int8 features with.

    When the head card recorded its metrics on these very triples, those are the figures (the shipped head on fp32
    features of the same split) and only ``cosine_rows`` validation rows are run in torch for the cosine; otherwise
    the validation and test rows are run in torch and the fp32 head graph scores them.
    Returns (figures, indices of the rows run in torch, their features)."""
    from unspoken.runtime.session import make_session

    from .features import extract_features

    split = np.array([r["split"] for r in rows])
    recorded = card.get("training", {})
    from_card = recorded.get("triples_sha256") == triples_sha256 and "validation" in recorded.get("metrics", {})
    if from_card:
        ref = np.flatnonzero(split == "validation")[:cosine_rows]
    else:
        ref = np.flatnonzero((split == "validation") | (split == "test"))
    feats = extract_features(bb, template, [rows[i] for i in ref], [layer], progress=progress)[layer]
    if from_card:
        figures = {"source": "head card (same triples)", "validation": recorded["metrics"]["validation"],
                   "test": recorded["metrics"].get("test")}
        return figures, ref, feats
    sess = make_session(head_file, threads=1)
    probs = np.asarray(sess.run(None, {"features": feats})[0], dtype=np.float64).reshape(-1)
    labels = np.array([rows[i]["label"] for i in ref])
    figures = {"source": "fp32 head on torch fp32 features of these triples"}
    for name in ("validation", "test"):
        sel = split[ref] == name
        figures[name] = split_metrics(labels[sel], probs[sel])
    return figures, ref, feats


def split_metrics(labels: np.ndarray, probs: np.ndarray) -> dict | None:
    return metrics.summary(labels, probs) if len(labels) else None


def quality_gate(fp32_auroc: float, int8_auroc: float, max_drop: float, *, force: bool) -> str:
    """'passed', or 'forced' with ``force``; otherwise QualityGateError with both figures."""
    drop = fp32_auroc - int8_auroc
    if drop <= max_drop:  # NaN never passes
        return "passed"
    if force:
        return "forced"
    raise QualityGateError(
        f"int8 head's validation AUROC {int8_auroc:.4f} is {drop:.4f} below the fp32 head's {fp32_auroc:.4f} "
        f"(allowed: {max_drop:g}); the int8 bundle was not written. Keep more MatMuls in fp32 (--keep-fp32), "
        "or pass --force (force=True) to write it anyway with both figures in its manifest"
    )
