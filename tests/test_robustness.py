"""Odd text never crashes the runtime; shared use from threads and repeated calls give identical results."""

import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import needs_export

pytestmark = needs_export
BUNDLE = ("llama", "content-first")


@pytest.fixture(scope="module")
def clf(tiny_bundles):
    from unspoken.runtime import Classifier

    return Classifier(tiny_bundles[BUNDLE])


text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=200).filter(str.strip)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=text, criteria=st.lists(text, min_size=1, max_size=4))
def test_any_unicode_scores_finite_probabilities(clf, content, criteria):
    scores = clf.score(content, criteria)
    assert len(scores) == len(criteria)
    assert all(np.isfinite(s) and 0.0 <= s <= 1.0 for s in scores)


@pytest.mark.parametrize("bad,message", [
    ("\ud800 lone surrogate", "lone surrogate"),
    ("   \n\t ", "is empty"),
    (42, "must be a string"),
])
def test_bad_content_is_a_clear_input_error(clf, bad, message):
    from unspoken.runtime import InputError

    with pytest.raises(InputError, match=message):
        clf.score(bad, ["a criterion"])


def test_empty_criteria_list_is_refused(clf):
    from unspoken.runtime import InputError

    with pytest.raises(InputError, match="non-empty list"):
        clf.score("text", [])


def test_control_characters_and_bidi_marks_score(clf):
    scores = clf.score("nul\x00 escape \x1b[31m rtl \u202e zero-width \u200b", ["\x07 bell", "tab\tcriterion"])
    assert all(0.0 <= s <= 1.0 for s in scores)


def test_shared_classifier_across_8_threads_equals_sequential(clf):
    jobs = [(f"message number {i} 🎉 " * (1 + i % 5), [f"criterion {j}" for j in range(1 + i % 4)]) for i in range(40)]
    sequential = [clf.score(c, k) for c, k in jobs]
    results = [None] * len(jobs)

    def work(idx):
        for i in idx:
            results[i] = clf.score(*jobs[i])

    threads = [threading.Thread(target=work, args=(range(t, len(jobs), 8),)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == sequential  # bit-for-bit


def test_repeated_calls_are_bit_identical(clf):
    first = clf.score("same input", ["a", "b", "c"])
    assert all(clf.score("same input", ["a", "b", "c"]) == first for _ in range(5))


# -- content longer than the backbone's context ----------------------------------------------------------------------
LONG = "I used to hate this product, but honestly now I love it. 🎉 " * 200  # ~5,000 tokens; tiny backbones take 2,048


def test_overlong_content_is_refused_naming_the_lengths(clf):
    from unspoken.runtime import InputError

    lengths = r"prompt is \d+ tokens \(content segment \d+, longest criterion segment \d+\); "
    with pytest.raises(InputError, match=lengths + r"the backbone takes at most 2048; .*truncate=True"):
        clf.score(LONG, ["likes it"])


@pytest.mark.parametrize("order,use_cache", [("content-first", True), ("content-first", False),
                                             ("criterion-first", False)])
def test_truncated_scores_equal_the_pre_cut_content(tiny_bundles, order, use_cache):
    from unspoken.runtime import Classifier, InputError

    c = Classifier(tiny_bundles[("llama", order)], chunk_size=2)
    criteria = ["likes it", "a much longer criterion about several things at once, written out in full", "x"]
    got = c.score_detailed(LONG, criteria, truncate=True)
    limit = c.manifest.backbone.max_positions
    assert got.truncated and 0 < got.kept_chars < got.content_chars == len(LONG)
    assert limit - 8 <= got.prompt_tokens <= limit  # cut at a token boundary, as late as fits
    cut = LONG[: got.kept_chars]
    manual = c.score_detailed(cut, criteria)
    assert not manual.truncated and manual.kept_chars == len(cut)
    assert got.probabilities == manual.probabilities == c.score(LONG, criteria, truncate=True)
    feats = c.features(LONG, criteria, use_cache=use_cache, truncate=True)
    assert np.array_equal(feats, c.features(cut, criteria, use_cache=use_cache))
    with pytest.raises(InputError, match="at most 2048"):  # a few more content tokens would not fit
        c.score(LONG[: got.kept_chars + 40], criteria)


@pytest.mark.parametrize("content", [LONG[:8000], LONG * 100], ids=["read-whole", "read-through-a-window"])
def test_truncation_of_moderate_and_huge_content(clf, content):
    got = clf.score_detailed(content, ["likes it"], truncate=True)
    assert got.truncated and 2048 - 8 <= got.prompt_tokens <= 2048
    assert got.probabilities == clf.score(content[: got.kept_chars], ["likes it"])


def test_truncation_leaves_room_for_the_longest_criterion(clf):
    short = clf.score_detailed(LONG, ["x"], truncate=True)
    both = clf.score_detailed(LONG, ["x", "a much longer criterion " * 20], truncate=True)
    assert both.kept_chars < short.kept_chars
    assert both.probabilities[0] == clf.score(LONG[: both.kept_chars], ["x"])[0]  # same content for every criterion


def test_short_content_reports_not_truncated(clf):
    got = clf.score_detailed("short text", ["a", "b"], truncate=True)
    assert got.truncated is False and got.kept_chars == got.content_chars == 10
    assert got.probabilities == clf.score("short text", ["a", "b"])
    assert [s.truncated for s in clf.score_many_detailed([("short", "a"), (LONG, "a")], truncate=True)] == [False, True]
    assert clf.score_many([(LONG, "a")], truncate=True) == [clf.score(LONG, "a", truncate=True)]


def test_a_criterion_longer_than_the_context_is_refused_even_with_truncate(clf):
    from unspoken.runtime import InputError

    with pytest.raises(InputError, match=r"criteria\[1\] alone makes a \d+-token prompt segment.*shorten the"):
        clf.score("text", ["ok", "criterion " * 3000], truncate=True)


@pytest.mark.parametrize("kwargs,message", [({"threads": 0}, "threads must be"), ({"threads": -2}, "threads must be"),
                                            ({"chunk_size": 0}, "chunk_size must be"),
                                            ({"chunk_size": 2.5}, "chunk_size must be")])
def test_bad_classifier_options_are_input_errors(tiny_bundles, kwargs, message):
    from unspoken.runtime import Classifier, InputError

    with pytest.raises(InputError, match=message):
        Classifier(tiny_bundles[BUNDLE], **kwargs)


# -- determinism across processes ------------------------------------------------------------------------------------
DETERMINISM_SCRIPT = """
import json, sys
from unspoken.runtime import Classifier
clf = Classifier(sys.argv[1], threads=2, chunk_size=3)
scores = clf.score("I used to hate it, now I love it. 🎉", ["likes it", "about cars", "x", "Ünïcödé", "tab\\tthere"])
feats = clf.features("I used to hate it, now I love it. 🎉", ["likes it", "about cars"])
print(json.dumps({"scores": [s.hex() for s in scores], "features": feats.tobytes().hex()}))
"""


def test_scores_are_bit_identical_across_processes(tiny_bundles):
    import json
    import subprocess
    import sys

    from unspoken.runtime import Classifier

    bundle = str(tiny_bundles[BUNDLE])
    runs = []
    for _ in range(2):
        res = subprocess.run([sys.executable, "-c", DETERMINISM_SCRIPT, bundle], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        runs.append(json.loads(res.stdout.strip().splitlines()[-1]))
    assert runs[0] == runs[1]
    here = Classifier(bundle, threads=2, chunk_size=3)
    content = "I used to hate it, now I love it. 🎉"
    scores = here.score(content, ["likes it", "about cars", "x", "Ünïcödé", "tab\tthere"])
    assert [s.hex() for s in scores] == runs[0]["scores"]
    assert here.features(content, ["likes it", "about cars"]).tobytes().hex() == runs[0]["features"]
