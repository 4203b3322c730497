"""The edge's frame queue and batching rule without ROS (core.batching): time passed in."""

import math

import pytest

from edgent_ros.core.batching import Batch, BatchQueue
from edgent_ros.core.ledger import check_threshold, FrameRefused, MAX_THRESHOLD

A, B = (5, 2, 0.0), (3, 1, 0.0)    # (exit, split, confidence threshold) configurations


def items(batch: Batch) -> list:
    return [item for item, _ in batch.items]


def test_one_frame_at_a_time_without_batching():
    q = BatchQueue(max_queue=4)
    for k, cfg in enumerate((A, A, B)):
        assert q.push(f'f{k}', cfg, 0.0) == []
    assert len(q) == 3
    got = [items(q.take(0.001)) for _ in range(3)]
    assert got == [['f0'], ['f1'], ['f2']]          # max_batch 1: same configuration or not
    assert q.take(0.002) is None and len(q) == 0


def test_frames_of_one_configuration_batch_together_in_arrival_order():
    q = BatchQueue(max_queue=8, max_batch=4)
    for name, cfg in (('a', A), ('b', B), ('c', A), ('d', A), ('e', B)):
        q.push(name, cfg, 0.0)
    first = q.take(0.010)
    assert isinstance(first, Batch) and first.config == A and items(first) == ['a', 'c', 'd']
    assert [w for _, w in first.items] == pytest.approx([10.0] * 3)   # waited ms
    second = q.take(0.010)
    assert second.config == B and items(second) == ['b', 'e']
    assert q.take(0.010) is None


def test_max_batch_caps_a_batch_and_the_rest_keeps_its_order():
    q = BatchQueue(max_queue=8, max_batch=2)
    for name, cfg in (('a', A), ('b', B), ('c', A), ('d', A)):
        q.push(name, cfg, 0.0)
    assert items(q.take(0.0)) == ['a', 'c']
    assert items(q.take(0.0)) == ['b']              # the oldest waiting frame opens the next
    assert items(q.take(0.0)) == ['d']


def test_queue_full_refuses_the_oldest_frame():
    q = BatchQueue(max_queue=2)
    assert q.push('a', A, 0.0) == [] and q.push('b', B, 0.1) == []
    out = q.push('c', A, 0.2)
    assert [(r.item, r.reason) for r in out] == [('a', 'queue_full')]
    assert 'oldest frame dropped' in out[0].detail and len(q) == 2
    assert items(q.take(0.2)) == ['b'] and items(q.take(0.2)) == ['c']


def test_stale_frames_are_refused_when_their_batch_closes():
    q = BatchQueue(max_queue=8, max_queue_ms=100.0, max_batch=4)
    q.push('old', A, 0.0)
    q.push('new', A, 0.15)
    b = q.take(0.2)                                  # 'old' waited 200 ms, 'new' 50 ms
    assert [(r.item, r.reason) for r in b.refused] == [('old', 'stale')]
    assert b.refused[0].detail == 'waited 200 ms in the edge queue'
    assert items(b) == ['new'] and b.items[0][1] == pytest.approx(50.0)
    q.push('late', B, 1.0)
    b = q.take(2.0)
    assert b.items == [] and [r.item for r in b.refused] == ['late']


def test_the_window_waits_for_more_frames_of_the_configuration():
    q = BatchQueue(max_queue=8, max_batch=4, batch_window_ms=10.0)
    q.push('a', A, 0.0)
    assert q.take(0.0) == pytest.approx(0.010)      # open: wait up to 10 ms
    assert q.batch_open and len(q) == 0
    q.push('b', A, 0.004)
    q.push('x', B, 0.005)
    assert q.take(0.005) == pytest.approx(0.005)
    b = q.take(0.011)                                # window over: closes with what it has
    assert items(b) == ['a', 'b'] and b.config == A
    assert [w for _, w in b.items] == pytest.approx([11.0, 7.0])
    assert not q.batch_open
    assert q.take(0.011) == pytest.approx(0.010)    # 'x' opens the next batch
    assert items(q.take(0.030)) == ['x']


def test_a_full_batch_closes_before_its_window():
    q = BatchQueue(max_queue=8, max_batch=2, batch_window_ms=50.0)
    q.push('a', A, 0.0)
    assert isinstance(q.take(0.0), float)
    q.push('b', A, 0.001)
    assert items(q.take(0.001)) == ['a', 'b']


def test_flush_closes_an_open_batch_at_once():
    q = BatchQueue(max_queue=8, max_batch=4, batch_window_ms=50.0)
    q.push('a', A, 0.0)
    assert isinstance(q.take(0.0), float)
    assert items(q.take(0.001, flush=True)) == ['a']


def test_frames_in_an_open_batch_do_not_count_against_max_queue():
    q = BatchQueue(max_queue=2, max_batch=4, batch_window_ms=50.0)
    q.push('a', A, 0.0)
    q.take(0.0)                                      # 'a' left the queue for the open batch
    assert q.push('b', B, 0.001) == [] and q.push('c', B, 0.002) == []
    assert [r.item for r in q.push('d', B, 0.003)] == ['b']


def test_settings_change_at_run_time_and_are_checked():
    q = BatchQueue()
    q.configure(max_batch=3, batch_window_ms=5.0)
    assert (q.max_queue, q.max_queue_ms, q.max_batch, q.batch_window_ms) == (4, 1000.0, 3, 5.0)
    for kw in (dict(max_queue=0), dict(max_batch=1.5), dict(max_batch=True),
               dict(batch_window_ms=-1.0), dict(max_queue_ms=math.nan), dict(max_queue='4')):
        name, value = next(iter(kw.items()))
        with pytest.raises(ValueError, match=f'{name} must be .* got {value!r}'):
            BatchQueue(**kw)
        with pytest.raises(ValueError, match=name):
            q.configure(**kw)
    assert q.max_batch == 3
    with pytest.raises(ValueError, match='colour'):
        q.configure(colour=1)


def test_confidence_threshold_check():
    assert check_threshold(0) == 0.0 and check_threshold(MAX_THRESHOLD) == MAX_THRESHOLD
    for bad in (-0.1, MAX_THRESHOLD + 1, math.nan, math.inf):
        with pytest.raises(FrameRefused) as info:
            check_threshold(bad)
        assert info.value.reason == 'confidence_threshold' and 'nats' in info.value.detail
