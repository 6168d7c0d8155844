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
