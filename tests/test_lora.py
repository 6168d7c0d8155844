"""Verdict LoRA on a tiny backbone: trains, checkpoints, resumes, and merges into an exported bundle."""

import json

import numpy as np

from conftest import needs_export, write_toy_triples

pytestmark = needs_export


def test_verdict_target_drops_the_label():
    from unspoken.export.lora import verdict_target

    assert verdict_target("ASSESSMENT: The criterion is met.") == " Yes."
    assert verdict_target("ASSESSMENT: The criterion is not met, because B asks.") == " No, because B asks."
    assert verdict_target("Something else.") == " Something else."


def test_prompt_tokens_are_masked_out_of_the_loss(tiny_dirs):
    from unspoken.export.backbones import load_backbone
    from unspoken.export.lora import build_examples
    from unspoken.runtime.template import PromptTokenizer, default_template

    bb = load_backbone(tiny_dirs["llama"], progress=False)
    tok = PromptTokenizer(bb.tokenizer_file, bb.prepend_ids)
    row = {"content": "I love it", "criterion": "likes it", "verdict": "ASSESSMENT: The criterion is met."}
    (ids, labels, label), = build_examples([row | {"label": 1}], default_template(), tok, eos_id=2,
                                           max_tokens=512)[0]
    head, tail = tok.prompt_ids(default_template(), "I love it", "likes it")
    assert labels[: len(head + tail)] == [-100] * len(head + tail)
    assert ids[len(head + tail):] == labels[len(head + tail):] and labels[-1] == 2


def test_train_resume_merge_and_export(tiny_dirs, tmp_path):
    from unspoken.export.bundle import export_bundle
    from unspoken.export.lora import LoraSettings, train_lora
    from unspoken.export.train_head import HeadConfig, train_head
    from unspoken.runtime import Classifier

    triples = write_toy_triples(tmp_path / "t.jsonl", n=40)
    settings = LoraSettings(rank=4, alpha=8, batch_size=2, grad_accum=2, checkpoint_every=2, epochs=2)
    adapter = tmp_path / "lora"
    first = train_lora(tiny_dirs["llama"], triples, adapter, settings=settings, max_steps=2, progress=False)
    assert first["steps"] == 2 and np.isfinite(first["final_train_loss"])
    resumed = train_lora(tiny_dirs["llama"], triples, adapter, settings=settings, max_steps=4, resume=True,
                         progress=False)
    assert resumed["steps"] == 4 and len(resumed["loss_curve"]) == 4
    assert resumed["loss_curve"][:2] == first["loss_curve"]
    assert (adapter / "adapter_model.safetensors").is_file() and (adapter / "adapter_config.json").is_file()

    head = tmp_path / "head"
    card = train_head(tiny_dirs["llama"], triples, head, layer=2, lora=adapter, config=HeadConfig(kind="linear"),
                      progress=False)
    assert card["backbone"]["lora_sha256"]
    bundle = export_bundle(tiny_dirs["llama"], tmp_path / "bundle", head, lora=adapter, progress=False)
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["backbone"]["lora_sha256"] == card["backbone"]["lora_sha256"]
    assert manifest["backbone"]["lora_config"]["r"] == 4
    scores = Classifier(bundle).score("I love the phone.", ["The writer likes it."])
    assert 0.0 <= scores[0] <= 1.0

    # a head that ships its adapter in <head>/lora is exported with it merged, score for score
    import shutil

    shutil.copytree(adapter, head / "lora", ignore=shutil.ignore_patterns("checkpoint"))
    shipped = export_bundle(tiny_dirs["llama"], tmp_path / "bundle2", head, progress=False)
    again = json.loads((shipped / "manifest.json").read_text())
    assert again["backbone"]["lora_sha256"] == manifest["backbone"]["lora_sha256"]
    assert Classifier(shipped).score("I love the phone.", ["The writer likes it."]) == scores


def test_seed_state_auxiliary_variant_trains_and_resumes(tiny_dirs, tmp_path):
    from unspoken.export.lora import LoraSettings, train_lora

    triples = write_toy_triples(tmp_path / "t.jsonl", n=24)
    settings = LoraSettings(rank=2, alpha=4, batch_size=2, grad_accum=1, checkpoint_every=1, top_layer=2,
                            seed_loss_weight=0.5, decision_weight=5.0)
    adapter = tmp_path / "lora"
    first = train_lora(tiny_dirs["llama"], triples, adapter, settings=settings, max_steps=1, progress=False)
    again = train_lora(tiny_dirs["llama"], triples, adapter, settings=settings, max_steps=2, resume=True,
                       progress=False)
    assert again["loss_curve"][:1] == first["loss_curve"] and np.isfinite(again["loss_curve"][-1])
