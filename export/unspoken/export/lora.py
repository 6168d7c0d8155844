"""Verdict LoRA: teach the backbone to write the row's one-sentence verdict right after the exact probe prompt.

Plain next-token loss on the verdict tokens only (prompt tokens are masked), so the state at the seed cue comes to
hold the answer; at inference the model is cut below the LM head and never speaks. The verdict is rewritten to put
the decision first (" Yes, because ..." / " No, because ..."): the seed-cue position itself must then predict the
decision, which is what the probe reads. Trains on the train split, checks loss on the validation split,
checkpoints every N optimizer steps and resumes with ``resume=True``.

Optional auxiliary variant (``seed_loss_weight > 0``): a throwaway linear probe on the seed state at the extraction
layer adds a small binary cross-entropy term. The probe is discarded; the shipped head is always refit afterwards.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from unspoken.runtime.errors import InputError
from unspoken.runtime.template import PromptTemplate, PromptTokenizer, default_template

VERDICT_PREFIX = "ASSESSMENT:"


@dataclass
class LoraSettings:
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    top_layer: int | None = None  # adapters only on layers below this (the extraction layer); None = all layers
    learning_rate: float = 2e-4
    epochs: float = 1.0
    batch_size: int = 4
    grad_accum: int = 4
    max_tokens: int = 384  # longer prompt+verdict rows are skipped (and counted)
    checkpoint_every: int = 25  # optimizer steps
    seed: int = 0
    seed_loss_weight: float = 0.0  # > 0: auxiliary BCE of a linear probe on the seed state at `top_layer`
    threads: int | None = None  # torch intra-op threads; None = torch's default
    decision_weight: float = 1.0  # loss weight of the first verdict token (the decision the seed state predicts)
    bf16_autocast: bool = True  # ~1.4x faster on CPUs with bf16 units; adapter weights and optimizer stay fp32


_DECISION_FIRST = (("The criterion is not met", "No"), ("The criterion is met", "Yes"))


def verdict_target(verdict: str) -> str:
    """The text the model must write after the seed cue: the verdict without its 'ASSESSMENT:' label, decision first.

    "The criterion is met, because X" becomes "Yes, because X" (and "not met" becomes "No"), so the very token the
    seed-cue state predicts is the decision.
    """
    text = verdict.strip()
    if text.upper().startswith(VERDICT_PREFIX):
        text = text[len(VERDICT_PREFIX):].strip()
    for long, short in _DECISION_FIRST:
        if text.startswith(long):
            text = short + text[len(long):]
            break
    return " " + text


def build_examples(rows, template: PromptTemplate, tok: PromptTokenizer, eos_id: int | None, max_tokens: int):
    """(input ids, labels with -100 over the prompt) per row; returns the examples and how many were too long."""
    examples, skipped = [], 0
    for r in rows:
        if not isinstance(r.get("verdict"), str) or not r["verdict"].strip():
            raise InputError(f"row {r.get('id', '?')} has no verdict; LoRA training needs one per row")
        head, tail = tok.prompt_ids(template, r["content"], r["criterion"])
        prompt = head + tail
        target = tok.encode(verdict_target(r["verdict"])) + ([eos_id] if eos_id is not None else [])
        if len(prompt) + len(target) > max_tokens:
            skipped += 1
            continue
        examples.append((prompt + target, [-100] * len(prompt) + target, int(r["label"])))
    return examples, skipped


def _batches(examples, batch_size: int, pad_id: int, rng: random.Random, bucket: int = 16):
    """Shuffled batches of similar length: a random window of ``bucket`` batches is sorted by length, then cut,
    so padding stays small while the order stays random. Yields (ids, mask, labels, seed positions, row labels)."""
    import torch

    order = list(range(len(examples)))
    rng.shuffle(order)
    window = batch_size * bucket
    batches = []
    for w in range(0, len(order), window):
        part = sorted(order[w : w + window], key=lambda i: len(examples[i][0]))
        batches += [part[k : k + batch_size] for k in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    for idx in batches:
        chunk = [examples[i] for i in idx]
        width = max(len(x) for x, _, _ in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        labels = torch.full((len(chunk), width), -100, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        seed_pos = torch.zeros(len(chunk), dtype=torch.long)
        for j, (x, y, _) in enumerate(chunk):
            ids[j, : len(x)] = torch.tensor(x)
            labels[j, : len(y)] = torch.tensor(y)
            mask[j, : len(x)] = 1
            seed_pos[j] = sum(1 for v in y if v == -100) - 1
        yield ids, mask, labels, seed_pos, torch.tensor([float(c) for _, _, c in chunk])


def _verdict_loss(model, ids, mask, labels, seed_pos, row_labels, probe, layer: int, weight: float,
                  decision_weight: float = 1.0):
    """Next-token loss on the verdict tokens only; the LM head runs only where a label exists (it is ~1/5 of the
    FLOPs per token on small backbones). The first verdict token (Yes/No, predicted at the seed cue) counts
    ``decision_weight`` times; the loss is the weighted mean. With a probe, adds ``weight`` x BCE of the probe on the
    seed state."""
    import torch
    import torch.nn.functional as F

    base = model.get_base_model()
    out = base.model(input_ids=ids, attention_mask=mask, output_hidden_states=probe is not None)
    target = labels[:, 1:]
    keep = target != -100
    logits = base.lm_head(out.last_hidden_state[:, :-1][keep])
    per_token = F.cross_entropy(logits.float(), target[keep], reduction="none")
    weights = torch.ones(target.shape)
    weights[torch.arange(len(ids)), seed_pos] = decision_weight  # target index seed_pos = token after the seed
    weights = weights[keep]
    loss = (per_token * weights).sum() / weights.sum()
    if probe is not None:
        seed = out.hidden_states[layer][range(len(ids)), seed_pos]
        loss = loss + weight * F.binary_cross_entropy_with_logits(probe(seed.float()).squeeze(-1), row_labels)
    return loss


def train_lora(
    backbone: str | Path,
    triples: str | Path,
    out_dir: str | Path,
    *,
    template: PromptTemplate | None = None,
    settings: LoraSettings | None = None,
    max_steps: int | None = None,
    resume: bool = False,
    progress: bool = True,
) -> dict:
    """Train and save a peft adapter (adapter_model.safetensors + adapter_config.json) and training_log.json."""
    import torch
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
    from tqdm.auto import tqdm

    from .backbones import load_backbone
    from .triples import load_triples

    s = settings or LoraSettings()
    if s.threads:
        torch.set_num_threads(s.threads)
    template = template or default_template()
    out_dir = Path(out_dir)
    ckpt = out_dir / "checkpoint"
    if out_dir.exists() and any(out_dir.iterdir()) and not resume:
        raise InputError(f"{out_dir} is not empty; pass resume=True (--resume) to continue a run")
    torch.manual_seed(s.seed)
    rows = load_triples(triples)
    bb = load_backbone(backbone, attn_implementation="sdpa", progress=progress)
    tok = PromptTokenizer(bb.tokenizer_file, bb.prepend_ids)
    eos = getattr(bb.config, "eos_token_id", None)
    eos = eos[0] if isinstance(eos, list) else eos
    train, skipped = build_examples([r for r in rows if r["split"] == "train"], template, tok, eos, s.max_tokens)
    val, _ = build_examples([r for r in rows if r["split"] == "validation"], template, tok, eos, s.max_tokens)
    if not train:
        raise InputError("no training rows fit max_tokens; raise it or shorten the contents")
    top = s.top_layer or bb.num_layers
    peft_config = LoraConfig(
        r=s.rank, lora_alpha=s.alpha, lora_dropout=s.dropout, target_modules=list(s.target_modules),
        layers_to_transform=list(range(top)), task_type="CAUSAL_LM",
    )
    model = get_peft_model(bb.model, peft_config)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    probe = None
    if s.seed_loss_weight > 0:
        probe = torch.nn.Linear(int(bb.config.hidden_size), 1)
        params += list(probe.parameters())
    optim = torch.optim.AdamW(params, lr=s.learning_rate)
    batches_per_epoch = -(-len(train) // s.batch_size)
    total_steps = max(1, int(s.epochs * batches_per_epoch) // s.grad_accum)
    if max_steps is not None:
        total_steps = min(total_steps, max_steps)
    step, log = 0, {"loss": [], "seconds": 0.0}
    if resume and (ckpt / "state.pt").is_file():
        from safetensors.torch import load_file

        state = torch.load(ckpt / "state.pt", weights_only=False)
        set_peft_model_state_dict(model, load_file(ckpt / "adapter_model.safetensors"))
        if probe is not None:
            probe.load_state_dict(state["probe"])
        optim.load_state_dict(state["optim"])
        step, log = state["step"], state["log"]
    rng = random.Random(s.seed)
    bar = tqdm(total=total_steps, initial=step, desc="lora", unit="step", disable=not progress)
    micro, accumulated = 0, 0.0
    started = time.perf_counter()
    while step < total_steps:
        for ids, mask, labels, seed_pos, row_labels in _batches(train, s.batch_size, bb.pad_id, rng):
            micro += 1
            if micro <= step * s.grad_accum:  # fast-forward through batches consumed before a resume
                continue
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=s.bf16_autocast):
                loss = _verdict_loss(model, ids, mask, labels, seed_pos, row_labels, probe, top,
                                     s.seed_loss_weight, s.decision_weight) / s.grad_accum
            loss.backward()
            accumulated += float(loss.detach())
            if micro % s.grad_accum:
                continue
            optim.step()
            optim.zero_grad()
            step += 1
            log["loss"].append(accumulated)
            accumulated = 0.0
            bar.update()
            bar.set_postfix(loss=f"{log['loss'][-1]:.3f}")
            if step % s.checkpoint_every == 0 or step == total_steps:
                log["seconds"] += time.perf_counter() - started
                started = time.perf_counter()
                _checkpoint(model, optim, probe, step, log, ckpt)
            if step >= total_steps:
                break
    bar.close()
    model.eval()
    with torch.no_grad():
        losses = [float(_verdict_loss(model, i, m, y, p, c, None, top, 0.0))
                  for i, m, y, p, c in _batches(val[:64], s.batch_size, bb.pad_id, random.Random(0))]
    model.save_pretrained(out_dir)
    summary = {
        "backbone": bb.resolved.name,
        "weights_sha256": bb.resolved.weights_sha256,
        "template": template.to_dict(),
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(s).items()},
        "steps": step,
        "train_rows": len(train),
        "skipped_too_long": skipped,
        "final_train_loss": log["loss"][-1] if log["loss"] else None,
        "validation_loss": sum(losses) / len(losses) if losses else None,
        "seconds": round(log["seconds"], 1),
        "seconds_per_step": round(log["seconds"] / max(step, 1), 2),
        "loss_curve": log["loss"],
    }
    (out_dir / "training_log.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def _checkpoint(model, optim, probe, step: int, log: dict, ckpt: Path) -> None:
    import torch
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    ckpt.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in get_peft_model_state_dict(model).items()},
              str(ckpt / "adapter_model.safetensors"))
    state = {"optim": optim.state_dict(), "step": step, "log": log,
             "probe": probe.state_dict() if probe is not None else None}
    torch.save(state, ckpt / "state.pt.tmp")
    (ckpt / "state.pt.tmp").replace(ckpt / "state.pt")
