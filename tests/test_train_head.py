"""train-head end to end on a tiny backbone: features -> head -> card/report -> bundle -> scores."""

import json

import numpy as np

from conftest import needs_export, write_toy_triples

pytestmark = needs_export


def test_train_head_writes_a_bound_head_that_exports_and_scores(tiny_dirs, tmp_path):
    from unspoken.export.bundle import export_bundle
    from unspoken.export.train_head import HeadConfig, train_head
    from unspoken.runtime import Classifier

    head = tmp_path / "head"
    card = train_head(tiny_dirs["llama"], write_toy_triples(tmp_path / "t.jsonl"), head, layer=2,
                      config=HeadConfig(kind="linear"), progress=False)
    assert card["binding"]["extraction_layer"] == 2
    assert card["training"]["rows"] == {"train": 48, "validation": 24, "test": 24}
    assert card["training"]["onnx_vs_sklearn_max_abs"] <= 1e-5
    assert {"validation", "test"} <= set(card["training"]["metrics"])
    assert "| test |" in (head / "REPORT.md").read_text()
    bundle = export_bundle(tiny_dirs["llama"], tmp_path / "bundle", head, progress=False)
    scores = Classifier(bundle).score("I love this phone.", ["The writer likes the thing.", "x"])
    assert np.all(np.isfinite(scores)) and all(0 <= s <= 1 for s in scores)


def test_sweep_ranks_layers_and_heads_on_validation(tiny_dirs, tmp_path, capsys):
    from unspoken.runtime.cli import main

    triples = write_toy_triples(tmp_path / "t.jsonl", n=64)
    assert main(["sweep-head", "--backbone", str(tiny_dirs["llama"]), "--triples", str(triples),
                 "--layers", "1", "3", "--out", str(tmp_path / "sweep")]) == 0
    rows = json.loads((tmp_path / "sweep.json").read_text())
    assert {r["layer"] for r in rows} == {1, 3} and len(rows) == 10
    assert [r["auroc"] for r in rows] == sorted((r["auroc"] for r in rows), reverse=True)
    assert "| layer | head |" in capsys.readouterr().out


def test_sweep_compares_normalisations_and_kinds(tiny_dirs, tmp_path):
    from unspoken.runtime.cli import main

    triples = write_toy_triples(tmp_path / "t.jsonl", n=64)
    assert main(["sweep-head", "--backbone", str(tiny_dirs["llama"]), "--triples", str(triples), "--layers", "2",
                 "--kinds", "linear", "--normalize", "standard", "l2", "--out", str(tmp_path / "sweep")]) == 0
    rows = json.loads((tmp_path / "sweep.json").read_text())
    assert sorted((r["head"], r["normalize"]) for r in rows) == sorted(
        (f"linear C={c}", n) for c in ("0.01", "0.1", "1") for n in ("standard", "l2"))


def test_chat_wrapping_puts_the_seed_cue_in_the_assistant_turn(tiny_dirs, tmp_path, capsys):
    import shutil

    from unspoken.export.backbones import load_backbone
    from unspoken.export.chat import chat_wrapped
    from unspoken.runtime.cli import main
    from unspoken.runtime.template import default_template

    triples = write_toy_triples(tmp_path / "t.jsonl", n=16)
    assert main(["sweep-head", "--backbone", str(tiny_dirs["llama"]), "--triples", str(triples), "--layers", "2",
                 "--chat"]) == 2  # the tiny tokenizer has no chat template: one clear line, no traceback
    assert "has no chat template" in capsys.readouterr().err

    folder = tmp_path / "chatty"
    shutil.copytree(tiny_dirs["llama"], folder)
    cfg_file = folder / "tokenizer_config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["chat_template"] = ("{% for m in messages %}<|user|>{{ m['content'] }}<|end|>{% endfor %}"
                            "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    cfg_file.write_text(json.dumps(cfg))
    t = chat_wrapped(default_template(), load_backbone(folder, progress=False))
    text = t.render("I love it.", "The writer likes it.")
    assert text.startswith("<|user|>Text: I love it.")
    assert text.endswith("Does the text meet the criterion?<|end|><|assistant|>Assessment:")
    assert t.cacheable and t.sha256 != default_template().sha256
