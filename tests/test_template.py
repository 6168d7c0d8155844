"""Prompt templates: segments, hashing, validation."""

import pytest

from unspoken.runtime.template import PromptTemplate, default_template


def test_content_first_puts_content_alone_in_first_segment():
    t = default_template("content-first")
    first, second = t.segments("CONTENT", "CRITERION")
    assert "CONTENT" in first and "CRITERION" not in first
    assert "CRITERION" in second and second.endswith(t.seed_cue)
    assert t.render("CONTENT", "CRITERION") == first + second


def test_criterion_first_puts_criterion_first():
    t = default_template("criterion-first")
    first, second = t.segments("CONTENT", "CRITERION")
    assert "CRITERION" in first and "CONTENT" in second
    assert not t.cacheable


def test_hash_changes_with_any_field_and_roundtrips():
    t = default_template()
    assert PromptTemplate.from_dict(t.to_dict()).sha256 == t.sha256
    assert default_template(seed_cue="Verdict:").sha256 != t.sha256
    assert default_template("criterion-first").sha256 != t.sha256


def test_bad_order_names_the_alternatives():
    with pytest.raises(ValueError, match="content-first, criterion-first"):
        default_template("middle-out")


def test_prompt_ids_many_equals_one_at_a_time(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    from unspoken.runtime.template import PromptTokenizer

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(["Text: Criterion: Assessment: likes it about cars"] * 5,
                            trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.save(str(tmp_path / "tokenizer.json"))
    pt = PromptTokenizer(tmp_path / "tokenizer.json", prepend_ids=[7])
    criteria = ["likes it", "about cars", "émoji 🎉"]
    for order in ("content-first", "criterion-first"):
        t = default_template(order)
        assert pt.prompt_ids_many(t, "some content", criteria) == [pt.prompt_ids(t, "some content", c) for c in criteria]
