"""Fit a head (MLP or linear probe) on seed-token features, calibrate it with isotonic regression, write it out.

The head is fit on the train split, the calibrator on the validation split, and metrics are reported on the test
split, whose criteria never occur in training. The written ONNX graph is checked against scikit-learn before it is
saved.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unspoken.runtime.errors import InputError, UnspokenError
from unspoken.runtime.manifest import HeadBinding, sha256_file
from unspoken.runtime.template import DEFAULT_SEED_CUE, PromptTemplate, default_template

from . import metrics
from .head_graph import HeadParams, build_head_model, numpy_head, params_from_sklearn

HEAD_CARD = "head.json"
HEAD_FILE = "head.onnx"
HEAD_SCHEMA = 1
NORMALIZATIONS = ("standard", "l2", "none")


@dataclass
class HeadConfig:
    kind: str = "mlp"  # "mlp" or "linear"
    hidden: tuple[int, ...] = (256,)
    alpha: float = 1e-2  # MLP L2 penalty
    c: float = 0.05  # logistic regression inverse penalty
    seed: int = 0
    max_iter: int = 400
    normalize: str = "standard"  # "standard" (z-score), "l2" (unit length, then z-score) or "none"

    def __post_init__(self) -> None:
        if self.kind not in ("mlp", "linear"):
            raise InputError(f"head kind {self.kind!r} is not known; available: mlp, linear")
        if self.normalize not in NORMALIZATIONS:
            raise InputError(f"feature normalisation {self.normalize!r} is not known; available: "
                             f"{', '.join(NORMALIZATIONS)}")


@dataclass
class FittedHead:
    params: HeadParams
    config: HeadConfig
    metrics: dict = field(default_factory=dict)
    sklearn: tuple = ()  # (scaler, model, isotonic) for parity checks

    def predict(self, features: np.ndarray) -> np.ndarray:
        return numpy_head(self.params, features)


def fit_head(x_train, y_train, x_cal, y_cal, config: HeadConfig) -> FittedHead:
    """Scaler + classifier on the train rows, isotonic calibration on the held-out calibration rows."""
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    if len(set(np.asarray(y_train).tolist())) < 2 or len(set(np.asarray(y_cal).tolist())) < 2:
        raise InputError("both the train and the calibration rows need positive and negative labels")
    x_train = _head_input(x_train, config)
    scaler = StandardScaler().fit(x_train)
    if config.normalize == "none":  # identity scaler, so the graph and the parity checks stay one code path
        scaler.mean_, scaler.scale_ = np.zeros(x_train.shape[1]), np.ones(x_train.shape[1])
    xt = scaler.transform(x_train)
    if config.kind == "mlp":
        model = MLPClassifier(
            hidden_layer_sizes=config.hidden, alpha=config.alpha, max_iter=config.max_iter,
            random_state=config.seed, early_stopping=False,
        )
    else:
        model = LogisticRegression(C=config.c, max_iter=2000)
    model.fit(xt, y_train)
    raw_cal = model.predict_proba(scaler.transform(_head_input(x_cal, config)))[:, 1]
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip").fit(raw_cal, y_cal)
    params = params_from_sklearn(scaler, model, iso, l2_normalize=config.normalize == "l2")
    return FittedHead(params, config, sklearn=(scaler, model, iso))


def _head_input(x: np.ndarray, config: HeadConfig) -> np.ndarray:
    """Features as float64, scaled to unit length first when the config says ``normalize="l2"``."""
    x = x.astype(np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True) if config.normalize == "l2" else x


def sklearn_predict(fitted: FittedHead, features: np.ndarray) -> np.ndarray:
    scaler, model, iso = fitted.sklearn
    return iso.predict(model.predict_proba(scaler.transform(_head_input(features, fitted.config)))[:, 1])


def write_head(fitted: FittedHead, out_dir: Path, *, card: dict, check_features: np.ndarray | None = None,
               tolerance: float = 1e-5) -> Path:
    """Save head.onnx and head.json; with check_features, refuse to write a graph that differs from scikit-learn."""
    import onnx

    from unspoken.runtime.session import make_session

    out_dir.mkdir(parents=True, exist_ok=True)
    model = build_head_model(fitted.params)
    path = out_dir / HEAD_FILE
    onnx.save(model, str(path))
    if check_features is not None and fitted.sklearn:
        sess = make_session(path, threads=1)
        got = sess.run(None, {"features": check_features.astype(np.float32)})[0]
        want = sklearn_predict(fitted, check_features.astype(np.float32))
        diff = float(np.abs(got - want).max())
        if diff > tolerance:
            raise UnspokenError(f"head graph differs from scikit-learn by {diff:.3g} (> {tolerance:g})")
        card.setdefault("training", {})["onnx_vs_sklearn_max_abs"] = diff
    card["file"] = HEAD_FILE
    card["head_sha256"] = sha256_file(path)
    (out_dir / HEAD_CARD).write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return out_dir


def read_head_card(head_dir: str | Path) -> dict:
    head_dir = Path(head_dir)
    card = head_dir / HEAD_CARD
    if not card.is_file():
        raise InputError(f"{head_dir} is not a head folder: it has no {HEAD_CARD}")
    data = json.loads(card.read_text(encoding="utf-8"))
    if data.get("schema_version", 0) > HEAD_SCHEMA:
        raise InputError(f"head card schema {data.get('schema_version')} is newer than this version understands")
    if not (head_dir / data.get("file", HEAD_FILE)).is_file():
        raise InputError(f"head folder {head_dir} lacks {data.get('file', HEAD_FILE)}")
    return data


def split_arrays(rows: list[dict], feats: np.ndarray, split: str) -> tuple[np.ndarray, np.ndarray]:
    sel = np.array([r["split"] == split for r in rows])
    return feats[sel], np.array([r["label"] for r in rows])[sel]


def train_head(
    backbone: str,
    triples: str | Path,
    out_dir: str | Path,
    *,
    layer: int | None = None,
    order: str = "content-first",
    seed_cue: str = DEFAULT_SEED_CUE,
    template: PromptTemplate | None = None,
    config: HeadConfig | None = None,
    lora: str | Path | None = None,
    chat: bool = False,
    batch_size: int = 16,
    progress: bool = True,
) -> dict:
    """Extract features, fit, calibrate, check and write a head folder. Returns the head card."""
    from .backbones import load_backbone
    from .features import extract_features
    from .triples import load_triples

    config = config or HeadConfig()
    template = template or default_template(order, seed_cue)
    rows = load_triples(triples)
    bb = load_backbone(backbone, lora=lora, attn_implementation="sdpa", progress=progress)
    if chat:
        from .chat import chat_wrapped

        template = chat_wrapped(template, bb)
    layer = layer or bb.default_layer()
    feats = extract_features(bb, template, rows, [layer], batch_size=batch_size, progress=progress)[layer]
    x_tr, y_tr = split_arrays(rows, feats, "train")
    x_va, y_va = split_arrays(rows, feats, "validation")
    x_te, y_te = split_arrays(rows, feats, "test")
    fitted = fit_head(x_tr, y_tr, x_va, y_va, config)
    results = {"validation": metrics.summary(y_va, fitted.predict(x_va))}
    if len(y_te):
        results["test"] = metrics.summary(y_te, fitted.predict(x_te))
        test_rows = [r for r in rows if r["split"] == "test"]
        p_te = fitted.predict(x_te)
        by_family = {}
        for fam in sorted({r.get("family", "all") for r in test_rows}):
            sel = np.array([r.get("family", "all") == fam for r in test_rows])
            by_family[fam] = metrics.summary(y_te[sel], p_te[sel])
        results["test_by_family"] = by_family
    binding = HeadBinding(bb.fingerprint, layer, int(bb.config.hidden_size), template.sha256)
    card = {
        "schema_version": HEAD_SCHEMA,
        "name": Path(out_dir).name,
        "kind": config.kind,
        "backbone": {
            "name": bb.resolved.name,
            "architecture": bb.config.model_type,
            "weights_sha256": bb.resolved.weights_sha256,
            "lora_sha256": bb.lora_sha256,
            "num_layers": bb.num_layers,
        },
        "binding": binding.__dict__,
        "template": template.to_dict(),
        "training": {
            "triples": Path(triples).name,
            "triples_sha256": sha256_file(triples),
            "rows": {s: int(sum(r["split"] == s for r in rows)) for s in ("train", "validation", "test")},
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.__dict__.items()},
            "metrics": results,
        },
    }
    write_head(fitted, Path(out_dir), card=card, check_features=np.concatenate([x_va, x_te]) if len(y_te) else x_va)
    (Path(out_dir) / "REPORT.md").write_text(render_report(card), encoding="utf-8")
    return card


def render_report(card: dict) -> str:
    """A short markdown report of a head: binding, training set and held-out metrics."""
    t = card["training"]
    m = t["metrics"]
    lines = [
        f"# Head `{card['name']}`",
        "",
        f"- backbone: `{card['backbone']['name']}` ({card['backbone']['architecture']}), "
        f"layer {card['binding']['extraction_layer']} of {card['backbone']['num_layers']}",
        f"- template: {card['template']['order']}, seed cue `{card['template']['seed_cue']}`, "
        f"sha256 `{card['binding']['template_sha256'][:16]}…`",
        f"- head: {card['kind']} {t['config']}",
        f"- triples: `{t['triples']}` (sha256 `{t['triples_sha256'][:16]}…`), rows {t['rows']}",
        "- fit on train, isotonic calibration on validation, test criteria never seen in training",
        "",
        "| split / family | n | AUROC | accuracy | ECE (15 bins) | Brier |",
        "|---|---|---|---|---|---|",
    ]
    rows = [(k, v) for k, v in m.items() if k != "test_by_family"]
    rows += [(f"test: {fam}", v) for fam, v in m.get("test_by_family", {}).items()]
    for name, v in rows:
        lines.append(f"| {name} | {v['n']} | {v['auroc']:.3f} | {v['accuracy']:.3f} | {v['ece']:.3f} | {v['brier']:.3f} |")
    return "\n".join(lines) + "\n"
