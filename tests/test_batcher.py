"""MicroBatcher on its own (no model, no HTTP): batches are bounded, waiting items join, the queue refuses rather
than grows, errors reach every waiting item, and close() finishes what is queued."""

import threading
import time

import pytest

from unspoken.runtime.serve.batcher import MicroBatcher, QueueFull, ShuttingDown


def test_items_queued_while_busy_are_scored_together_in_bounded_batches():
    gate, sizes = threading.Event(), []

    def score(items):
        gate.wait(5)  # the first batch blocks until everything else is queued
        sizes.append(len(items))
        return [x * 2 for x in items]

    b = MicroBatcher(score, max_batch=4, max_wait_s=0.0, max_queue=16)
    first = b.submit([0])
    time.sleep(0.05)  # the worker has taken item 0 and is blocked in score()
    later = b.submit(list(range(1, 10)))
    gate.set()
    assert [j.future.result(5) for j in first + later] == [x * 2 for x in range(10)]
    assert sizes == [1, 4, 4, 1]
    assert all(j.batch_size == 4 for j in later[:4]) and later[0].started >= later[0].enqueued
    b.close()


def test_waits_for_company_up_to_max_wait():
    sizes = []
    b = MicroBatcher(lambda items: sizes.append(len(items)) or items, max_batch=8, max_wait_s=0.2, max_queue=16)
    jobs = b.submit([1])
    time.sleep(0.02)
    jobs += b.submit([2, 3])
    assert [j.future.result(5) for j in jobs] == [1, 2, 3]
    assert sizes == [3]
    b.close()


def test_full_queue_refuses_all_or_nothing():
    gate = threading.Event()
    b = MicroBatcher(lambda items: gate.wait(5) and items, max_batch=1, max_wait_s=0.0, max_queue=3)
    running = b.submit([0])
    time.sleep(0.05)
    queued = b.submit([1, 2])
    with pytest.raises(QueueFull) as e:
        b.submit([3, 4])  # only one place left: neither item is admitted
    assert e.value.retry_after_s >= 1 and b.depth == 2
    b.submit([3])
    gate.set()
    assert [j.future.result(5) for j in running + queued] == [0, 1, 2]
    b.close()


def test_an_error_reaches_every_item_of_its_batch_and_the_worker_survives():
    calls = []

    def score(items):
        calls.append(items)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return items

    b = MicroBatcher(score, max_batch=4, max_wait_s=0.05, max_queue=8)
    bad = b.submit([1, 2])
    for j in bad:
        with pytest.raises(RuntimeError, match="boom"):
            j.future.result(5)
    assert b.submit([3])[0].future.result(5) == 3
    b.close()


def test_close_finishes_queued_items_then_refuses():
    gate = threading.Event()
    b = MicroBatcher(lambda items: gate.wait(5) and items, max_batch=2, max_wait_s=0.0, max_queue=8)
    jobs = b.submit([1, 2, 3, 4, 5])
    closer = threading.Thread(target=b.close)
    closer.start()
    time.sleep(0.05)
    with pytest.raises(ShuttingDown):
        b.submit([6])
    gate.set()
    closer.join(5)
    assert not closer.is_alive()
    assert [j.future.result(0) for j in jobs] == [1, 2, 3, 4, 5]
