"""Classifier.score_many batches across items (full passes for single criteria, a shared prefill for several) and
agrees with score(); bad items are named by index before anything runs."""

import pytest

from conftest import needs_export

pytestmark = needs_export

ITEMS = [
    ("I used to hate this product, but honestly now I love it.", ["The writer likes it."]),
    ("Rain again, all week.", ["It is about weather.", "The writer likes it.", "x"]),
    ("Short.", "A criterion given as a plain string."),
    ("A much longer note that goes on and on about cafes, films and phones " * 3, ["About cafes?"]),
    ("Ünïcödé façade 🎉", ["Has emoji.", "Is written in French."]),
]


@pytest.mark.parametrize("order", ["content-first", "criterion-first"])
def test_score_many_equals_score_per_item(order, tiny_bundles):
    from unspoken.runtime import Classifier

    clf = Classifier(tiny_bundles[("llama", order)], chunk_size=2)  # several chunks of full passes
    many = clf.score_many(ITEMS)
    assert [len(m) for m in many] == [1, 3, 1, 1, 2]
    for got, (content, criteria) in zip(many, ITEMS):
        assert got == pytest.approx(clf.score(content, criteria), abs=1e-6)
    assert clf.score_many([]) == []


def test_score_many_names_the_bad_item(tiny_bundles):
    from unspoken.runtime import Classifier, InputError

    clf = Classifier(tiny_bundles[("llama", "content-first")])
    with pytest.raises(InputError, match=r"items\[1\]: criteria\[0\] is empty"):
        clf.score_many([("fine", ["ok"]), ("fine", ["  "])])
    with pytest.raises(InputError, match=r"items\[0\]: each item must be a \(content, criteria\) pair"):
        clf.score_many([("only content",)])
    with pytest.raises(InputError, match=r"items\[0\]: criteria must be a non-empty list"):
        clf.score_many([("fine", [])])
