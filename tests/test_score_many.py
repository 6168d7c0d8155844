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


MULTI = [  # several contents of different lengths, each with several criteria (the cached, multi-content path)
    ("Rain again, all week.", ["It is about weather.", "The writer likes it.", "x"]),
    ("I used to hate this product, but honestly now I love it. " * 2, ["The writer likes it.", "About a phone?"]),
    ("Short.", ["A criterion.", "Another, rather longer criterion about nothing in particular."]),
    ("A much longer note that goes on and on about cafes, films and phones " * 4, ["About cafes?", "About films?"]),
    ("Ünïcödé façade 🎉", ["Has emoji.", "Is written in French.", "Is a question."]),
]


def _count_prefills(clf):
    calls = []
    run = clf.graph.run

    def counting(*args, present_slot="scratch"):
        calls.append(present_slot)
        return run(*args, present_slot=present_slot)

    clf.graph.run = counting
    return calls


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_many_contents_share_one_prefill_and_equal_one_at_a_time(arch, tiny_bundles):
    import numpy as np

    from unspoken.runtime import Classifier

    clf = Classifier(tiny_bundles[(arch, "content-first")], chunk_size=8)  # 12 rows: chunks mix contents
    alone = [clf.score(content, criteria) for content, criteria in MULTI]
    calls = _count_prefills(clf)
    many = clf.score_many(MULTI)
    prefills = calls.count("prefill")
    # Padding changes matmul shapes and so float summation order: features agree to ~1e-6 relative (measured
    # 1.2e-6), which the tiny random head can stretch to a few 1e-6 in probability.
    for got, want in zip(many, alone):
        assert got == pytest.approx(want, abs=1e-5)
    prepared = [clf.prepare(content, criteria) for content, criteria in MULTI]
    grouped = np.empty((sum(p.n for p in prepared), clf.graph.hidden_size), dtype=np.float32)
    for rows, feats in clf._iter_features(prepared, use_cache=True):
        grouped[rows] = feats
    single = np.concatenate([clf.features(content, criteria) for content, criteria in MULTI])
    assert (np.abs(grouped - single).max(axis=1) / np.abs(single).max(axis=1)).max() <= 1e-5
    if arch == "llama":
        assert prefills == 1  # all five contents in one padded prefill pass
    else:  # tiny Gemma's sliding window (8 tokens) is shorter than any padded prompt: each content alone
        assert prefills == len(MULTI)


def test_without_the_window_guard_padding_would_change_sliding_window_scores(tiny_bundles):
    """The guard is needed: padding contents side by side shifts a sliding window, so Gemma's scores would move."""
    import dataclasses

    import numpy as np

    from unspoken.runtime import Classifier

    clf = Classifier(tiny_bundles[("gemma3", "content-first")], chunk_size=16)
    prepared = [clf.prepare(content, criteria) for content, criteria in MULTI]

    def features():
        out = np.empty((sum(p.n for p in prepared), clf.graph.hidden_size), dtype=np.float32)
        for rows, feats in clf._iter_features(prepared, use_cache=True):
            out[rows] = feats
        return out

    guarded = features()
    m = clf.manifest
    clf.manifest = dataclasses.replace(m, backbone=dataclasses.replace(m.backbone, sliding_window=None))
    unguarded = features()
    alone = np.concatenate([clf.features(content, criteria) for content, criteria in MULTI])
    rel = lambda a: (np.abs(a - alone).max(axis=1) / np.abs(alone).max(axis=1)).max()  # noqa: E731
    assert rel(guarded) <= 1e-5 < 1e-2 < rel(unguarded)


def test_prefix_cache_skips_the_prefill_of_a_content_seen_before(tiny_bundles):
    from unspoken.runtime import Classifier

    bundle = tiny_bundles[("llama", "content-first")]
    plain = Classifier(bundle)
    assert plain.prefix_cache_info() is None  # off by default
    clf = Classifier(bundle, prefix_cache_mb=1)
    content, criteria = MULTI[1]
    first = clf.score(content, criteria)
    calls = _count_prefills(clf)
    again = clf.score(content, ["A new criterion.", "And another one."])
    assert calls.count("prefill") == 0
    assert first == pytest.approx(plain.score(content, criteria), abs=1e-6)
    assert again == pytest.approx(plain.score(content, ["A new criterion.", "And another one."]), abs=1e-6)
    info = clf.prefix_cache_info()
    assert (info.hits, info.misses, info.entries) == (1, 1, 1) and 0 < info.bytes <= info.max_bytes


def test_prefix_cache_stays_within_its_bytes(tiny_bundles):
    from unspoken.runtime import Classifier

    bundle = tiny_bundles[("llama", "content-first")]
    message = "Message number {0}, with a few more words to make it longer. " * 3
    probe = Classifier(bundle, prefix_cache_mb=1)
    probe.score(message.format(10), ["a", "b"])
    entry = probe.prefix_cache_info().bytes  # every message below has the same token count
    clf = Classifier(bundle, prefix_cache_mb=3.5 * entry / 2**20)
    for i in range(10, 40):
        clf.score(message.format(i), ["a", "b"])
        info = clf.prefix_cache_info()
        assert info.bytes <= info.max_bytes
    assert info.entries == 3 and info.misses == 30
    clf.score(message.format(39), ["c", "d"])  # the most recent is kept, the oldest evicted
    clf.score(message.format(10), ["c", "d"])
    assert clf.prefix_cache_info().hits == 1


@pytest.mark.parametrize("bad", [-1, "10", True, float("nan")])
def test_prefix_cache_size_must_be_a_non_negative_number(bad, tiny_bundles):
    from unspoken.runtime import Classifier, InputError

    with pytest.raises(InputError, match="prefix_cache_mb"):
        Classifier(tiny_bundles[("llama", "content-first")], prefix_cache_mb=bad)


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_long_content_is_prefilled_in_slices_and_continued_in_small_passes(arch, tiny_bundles, monkeypatch):
    """Sliced prefill and the rows-x-tokens bound change only how the work is cut, not the result (tiny Gemma's
    8-token sliding window is crossed by every slice)."""
    import numpy as np

    from unspoken.runtime import Classifier, classifier

    clf = Classifier(tiny_bundles[(arch, "content-first")])
    content = "A long message about cafes, films, phones and the weather in several towns. " * 6
    criteria = ["About cafes?", "About films?", "Mentions rain.", "x"]
    long_way = clf.features(content, criteria, use_cache=False)  # one full pass per criterion
    monkeypatch.setattr(classifier, "PREFILL_SLICE", 16)
    monkeypatch.setattr(classifier, "CONTINUATION_TOKENS", 1)  # one row per continuation pass
    calls = _count_prefills(clf)
    sliced = clf.features(content, criteria)
    n_content = len(clf.prepare(content, criteria).content_ids)
    assert calls.count("prefill0") + calls.count("prefill1") == -(-n_content // 16) > 1
    assert calls.count("scratch") == len(criteria)
    assert (np.abs(sliced - long_way).max(axis=1) / np.abs(long_way).max(axis=1)).max() <= 1e-5
    calls.clear()
    single = clf.score(content, criteria[:1])  # a long content takes the sliced path even for one criterion
    assert calls.count("prefill0") > 0
    assert single == pytest.approx(clf.score(content, criteria)[:1], abs=1e-6)
