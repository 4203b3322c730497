"""Unit tests of the camera's link logic (core.camera_link), without ROS: time is passed in."""

import math
import random
import threading

import pytest

from edgent_ros.core.arch import branch_specs, NUM_EXITS
from edgent_ros.core.artifacts import read_config
from edgent_ros.core.camera_link import (CameraLink, FallbackPlanner, FrameWorker, PROBE_EXIT,
                                         START_SETTLE_S, StartGate)
from edgent_ros.core.ledger import Pending
from edgent_ros.core.link import BandwidthEstimator, wire_bytes

PROBE_AFTER_S = 1.0
EDGE_TIMEOUT_S = 3.0
PAYLOAD = 50_000    # bytes: a mid-trunk activation


@pytest.fixture(scope='module')
def cfg():
    return read_config(None)


@pytest.fixture(scope='module')
def fallback_problem(cfg):
    return FallbackPlanner.load(cfg, cfg.model_id()).problem


def make_link(problem, now=0.0, events=None, result_timeout_s=2.0):
    est = BandwidthEstimator(min_bytes=2048, overhead_s=0.0, probe_after_s=PROBE_AFTER_S,
                             stale_after_s=5.0, drop_confirm=2, slow_transfer_s=0.04)
    on_fallback = events.append if events is not None else None
    return CameraLink(now, est, FallbackPlanner(problem), result_timeout_s, EDGE_TIMEOUT_S,
                      on_fallback=on_fallback)


def send(link, now, exit_index=5, split_index=3, payload=PAYLOAD, true_class=1):
    """Admit and send one frame at ``now``; return its sequence number."""
    seq, busy = link.admit(True, max_in_flight=2)
    assert not busy
    link.sent(Pending(seq, now, now, exit_index, split_index, payload, 1.0, true_class, 200.0,
                      stamp_ns=seq))
    return seq


def answer(link, now, seq, sent_s, ok=True, edge_ms=5.0):
    """Deliver the edge's answer to frame ``seq`` at ``now`` and finish it as the node does."""
    p = link.result(now, seq, seq, ok, edge_ms, 0.0, 1)
    if p is not None:
        link.finish('ok_edge' if ok else 'refused:stale', (now - p.capture_s) * 1e3 <= 200.0
                    if ok else None)
    return p


# -- start gate ------------------------------------------------------------------------------

def test_gate_holds_until_everything_seen_then_settles():
    gate = StartGate(t0_s=0.0, wait_s=5.0)
    assert not gate.open(0.1, seen=False)
    assert not gate.open(1.0, seen=True)                       # seen: settling starts
    assert not gate.open(1.0 + START_SETTLE_S / 2, seen=True)
    assert gate.open(1.0 + START_SETTLE_S, seen=True)
    assert gate.started
    assert gate.open(1.6, seen=False)                           # once open, stays open


def test_gate_settling_restarts_when_a_reader_goes_away():
    gate = StartGate(t0_s=0.0, wait_s=5.0, settle_s=0.5)
    assert not gate.open(1.0, seen=True)
    assert not gate.open(1.4, seen=False)                       # lost again
    assert not gate.open(1.45, seen=True)                       # settling from 1.45
    assert not gate.open(1.9, seen=True)
    assert gate.open(1.95, seen=True)


def test_gate_opens_after_wait_regardless():
    gate = StartGate(t0_s=10.0, wait_s=5.0)
    assert not gate.open(14.9, seen=False)
    assert gate.open(15.0, seen=False)
    assert StartGate(t0_s=0.0, wait_s=0.0).open(0.0, seen=False)   # no waiting at all


@pytest.mark.parametrize('kw', [{'wait_s': -1.0}, {'wait_s': math.nan}, {'settle_s': -0.1},
                                {'wait_s': 'soon'}])
def test_gate_refuses_bad_times(kw):
    args = {'t0_s': 0.0, 'wait_s': 1.0, **kw}
    bad = next(iter(kw))
    with pytest.raises(ValueError, match=bad):
        StartGate(**args)


# -- probe scheduling ------------------------------------------------------------------------

def test_probe_due_on_a_quiet_link(fallback_problem):
    link = make_link(fallback_problem)
    assert link.tick(0.5).probe_due                 # never a sample: probe (the link is quiet)
    assert not link.tick(0.5).estimate


def test_no_probe_while_a_frame_is_in_flight_or_recently_sent(fallback_problem):
    link = make_link(fallback_problem)
    seq = send(link, 0.9)
    assert answer(link, 1.0, seq, 0.9) is not None   # the last sample: t = 1.0
    assert not link.tick(1.5).probe_due               # a sample 0.5 s ago
    seq = send(link, 1.1)
    assert not link.tick(2.05).probe_due              # no sample for 1.05 s, but one in flight
    assert answer(link, 2.06, seq, 1.1, ok=False) is not None   # refused: no sample
    assert not link.tick(2.08).probe_due              # nothing in flight, but sent 0.98 s ago
    assert link.tick(2.11).probe_due                  # quiet for probe_after_s


def test_probe_after_twice_probe_after_regardless(fallback_problem):
    link = make_link(fallback_problem)
    seq = send(link, 0.0)
    assert answer(link, 0.1, seq, 0.0) is not None     # the last sample: t = 0.1
    t = 0.3
    while t < 0.1 + 2 * PROBE_AFTER_S - 0.05:
        # small fast frames keep the link busy and bring no sample (under min_bytes)
        seq = send(link, t, payload=100)
        assert not link.tick(t + 0.01).probe_due
        assert answer(link, t + 0.02, seq, t) is not None
        t += 0.3
    send(link, 2.05, payload=100)
    assert link.tick(0.1 + 2 * PROBE_AFTER_S).probe_due   # even with a frame in flight


def test_one_probe_pair_at_a_time_and_its_sample(fallback_problem):
    link = make_link(fallback_problem)
    assert link.tick(1.0).probe_due
    assert not link.probing()
    s1, s2 = link.start_probe(1.0, 3000)
    assert (s1, s2) == (1, 2)
    assert not link.tick(1.1).probe_due                   # a pair is out
    assert link.probing()                                 # wait_for_link holds the next frame
    assert link.probe_result(1.25, s1, True, 2.0, 0.0)
    assert link.probing()                                 # until both answers are back
    assert link.rtt_ms == -1.0                               # known once the pair is complete
    assert not link.probe_result(1.26, 99, True, 2.0, 0.0)   # not ours
    assert link.probe_result(1.35, s2, True, 2.0, 0.0)       # dispersion 0.1 s
    # the round trip of an empty message: the first probe's 248 ms less its serialization
    assert link.rtt_ms == pytest.approx(148.0)
    est = link.tick(1.4).estimate
    assert est is not None and est.source == 'probe'
    assert not link.probing()
    assert est.bps == pytest.approx(wire_bytes(3000) * 8 / 0.1)   # 3,390 wire bytes / 0.1 s
    assert link.start_probe(5.0, 3000) == (3, 4)          # the next pair: fresh sequences


def test_an_unanswered_probe_pair_is_replaced(fallback_problem):
    link = make_link(fallback_problem)
    link.start_probe(1.0, 3000)
    assert not link.tick(1.0 + EDGE_TIMEOUT_S).probe_due
    assert link.tick(1.0 + EDGE_TIMEOUT_S + 0.1).probe_due
    assert not link.probing()                   # forgotten: frames are no longer held for it


def test_probe_settle_holds_captures_until_the_shapers_bucket_refills(fallback_problem):
    # 1,600 B of burst at 0.1 Mbit/s refill in 128 ms: a frame captured as soon as the pair's
    # answers are in would find the bucket the pair spent empty
    link = make_link(fallback_problem)
    s1, s2 = link.start_probe(1.0, 3000)
    assert link.probing(1.1, 0.128)
    link.probe_result(1.25, s1, True, 2.0, 0.0)
    link.probe_result(1.35, s2, True, 2.0, 0.0)
    assert not link.probing(1.35)                         # no settle: free at once
    assert link.probing(1.35, 0.128) and link.probing(1.47, 0.128)
    assert not link.probing(1.48, 0.128)
    # a pair forgotten unanswered settles from when it is forgotten
    link.start_probe(5.0, 3000)
    link.tick(5.0 + EDGE_TIMEOUT_S + 0.1)
    assert link.probing(5.0 + EDGE_TIMEOUT_S + 0.2, 0.128)
    assert not link.probing(5.0 + EDGE_TIMEOUT_S + 0.3, 0.128)


# -- fallback --------------------------------------------------------------------------------

def test_fallback_when_unreachable_and_back_when_it_answers(cfg, fallback_problem):
    events = []
    link = make_link(fallback_problem, events=events)
    assert link.configuration(5, 3, 200.0) == (5, 3)
    report = link.tick(EDGE_TIMEOUT_S + 0.5)             # nothing heard since start
    assert not report.edge_reachable and report.estimate is None
    assert events == [True] and link.fallback.active
    assert report.probe_due                                # probing is how it is heard again
    exit_index, split_index = link.configuration(5, 3, 200.0)
    assert split_index == len(branch_specs(cfg, exit_index))   # device-only
    assert 1 <= exit_index <= NUM_EXITS
    link.tick(EDGE_TIMEOUT_S + 1.0)
    assert events == [True]                                # reported once
    level, msg, values = link.diagnostics(EDGE_TIMEOUT_S + 1.0)
    assert level == 1 and 'device-only fallback' in msg and values['fallback_device_only']
    s1, _ = link.start_probe(4.0, 3000)
    assert link.probe_result(4.1, s1, True, 1.0, 0.0)     # the edge answers
    assert events == [True, False] and not link.fallback.active
    assert link.configuration(5, 3, 200.0) == (5, 3)
    assert link.tick(4.2).edge_reachable


def test_fallback_is_device_only_for_any_deadline(cfg, fallback_problem):
    fb = FallbackPlanner(fallback_problem)
    assert fb.configuration(5, 0, 1.0) == (5, 0)        # not active: the planned one
    fb.active = True
    for deadline_ms in (1.0, 50.0, 60_000.0):
        e, s = fb.configuration(5, 0, deadline_ms)
        assert s == len(branch_specs(cfg, e))
        assert fb.configuration(5, 0, deadline_ms) == (e, s)


def test_a_result_ends_the_fallback_a_late_one_does_not(fallback_problem):
    events = []
    link = make_link(fallback_problem, events=events)
    first, second = send(link, 0.0), send(link, 0.1)
    assert link.expire(2.05)[0].seq == first          # result_timeout_s 2: the first one is lost
    link.finish('dropped:edge_timeout')
    link.tick(EDGE_TIMEOUT_S + 0.1)
    assert events == [True]
    assert answer(link, EDGE_TIMEOUT_S + 0.2, first, 0.0) is None   # late: not heard
    assert events == [True] and link.fallback.active
    assert answer(link, EDGE_TIMEOUT_S + 0.3, second, 0.1) is not None
    assert events == [True, False] and not link.fallback.active


def test_timeouts_are_validated(fallback_problem):
    link = make_link(fallback_problem)
    link.edge_timeout_s = 0.5
    assert not link.tick(0.6).edge_reachable
    link.result_timeout_s = 0.25
    with pytest.raises(ValueError, match='edge_timeout_s'):
        link.edge_timeout_s = 0.0
    with pytest.raises(ValueError, match='result_timeout_s'):
        link.result_timeout_s = -1.0


# -- ledger ----------------------------------------------------------------------------------

def test_every_frame_ends_in_exactly_one_outcome(fallback_problem):
    rng = random.Random(7)
    link = make_link(fallback_problem, result_timeout_s=0.5)
    sent = {}
    outcomes = {}
    t = 0.0
    for _ in range(400):
        t += 0.05
        offloads = rng.random() < 0.8
        seq, busy = link.admit(offloads, max_in_flight=2)
        assert link.summary()['computing'] == 1   # admitted: on the robot until sent/finished
        if busy:
            link.finish('dropped:link_busy', seq=seq)
            outcomes[seq] = 'dropped:link_busy'
        elif not offloads:
            link.finish('ok_device', True, seq)
            outcomes[seq] = 'ok_device'
        else:
            link.sent(Pending(seq, t, t, 5, 3, PAYLOAD, 1.0, -1, 200.0, stamp_ns=seq))
            sent[seq] = t
        for seq_done, sent_s in list(sent.items()):     # answers: fast, slow or never
            if rng.random() < 0.3 and seq_done not in outcomes:
                p = link.result(t, seq_done, seq_done, True, 2.0, 0.0, 1)
                if p is not None:
                    link.finish('ok_edge', True)
                    outcomes[seq_done] = 'ok_edge'
        for p in link.expire(t):
            link.finish('dropped:edge_timeout')
            assert p.seq not in outcomes
            outcomes[p.seq] = 'dropped:edge_timeout'
        s = link.summary()
        assert s['computing'] == 0
        assert link.ledger.accounted() == s['produced']
    for p in link.expire(t + 10.0):
        link.finish('dropped:edge_timeout')
        outcomes[p.seq] = 'dropped:edge_timeout'
    s = link.summary()
    assert s['produced'] == 400 == len(outcomes) and s['in_flight'] == 0
    assert sum(v for k, v in s.items() if k not in ('produced', 'in_flight', 'computing')) == 400
    assert {'ok_edge', 'ok_device', 'dropped:link_busy', 'dropped:edge_timeout'} <= set(s)
    assert link.done(400) and not link.done(0)
    assert 0.0 < link.loss() < 1.0


def test_late_and_foreign_results_are_not_outcomes(fallback_problem):
    link = make_link(fallback_problem, result_timeout_s=0.5)
    seq = send(link, 0.0)
    assert link.result(0.1, seq, 12345, True, 1.0, 0.0, 1) is None   # another run's frame
    assert [p.seq for p in link.expire(0.6)] == [seq]
    link.finish('dropped:edge_timeout')
    assert link.result(0.7, seq, seq, True, 1.0, 0.0, 1) is None     # expired already
    assert link.late_results == 2
    assert link.summary() == {'produced': 1, 'in_flight': 0, 'computing': 0,
                              'dropped:edge_timeout': 1}
    assert link.loss() == 1.0


def test_link_busy_only_for_offloaded_frames(fallback_problem):
    link = make_link(fallback_problem)
    send(link, 0.0)
    send(link, 0.1)
    assert link.admit(True, max_in_flight=2)[1]
    assert not link.admit(False, max_in_flight=2)[1]     # device-only needs no link
    assert not link.admit(True, max_in_flight=3)[1]


def test_results_feed_the_estimate_and_edge_averages(fallback_problem):
    link = make_link(fallback_problem)
    for k in range(4):
        t = 0.2 * k
        seq = send(link, t)
        assert link.result(t + 0.05, seq, seq, True, 10.0, 0.0, 3) is not None  # 40 ms transfer
    report = link.tick(0.7)
    assert report.estimate.bps == pytest.approx(wire_bytes(PAYLOAD) * 8 / 0.04)   # headers too
    assert report.edge_batch_size > 1.0 and report.loss == 0.0
    level, _, values = link.diagnostics(0.7, {'exit_index': 5})
    assert level == 0 and values['exit_index'] == 5 and values['in_flight'] == 0


def test_diagnostic_level_grades_the_recent_window_only(fallback_problem):
    link = CameraLink(0.0, BandwidthEstimator(), FallbackPlanner(fallback_problem),
                      edge_timeout_s=1000.0, diagnostics_window_s=2.0)
    for t in (0.1, 0.2):
        link.new_frame()
        link.finish('dropped:link_busy', now_s=t)      # pacing: no problem
    assert link.diagnostics(0.5)[0] == 0
    link.new_frame()
    link.finish('refused:stale', now_s=1.0)             # the edge refused one frame
    level, msg, values = link.diagnostics(1.5)
    assert level == 1 and 'refused:stale 1' in msg and values['recent_dropped'] == 3
    for t in (1.5, 2.5, 3.5):                           # then frames go through
        link.new_frame()
        link.finish('ok_edge', True, now_s=t)
    level, msg, values = link.diagnostics(3.5)
    assert level == 0 and values['refused:stale'] == 1   # since start: still counted
    assert 'refused' not in msg and values['recent_dropped'] == 0


# -- the worker thread -----------------------------------------------------------------------

def test_worker_computes_one_frame_at_a_time_and_survives_errors():
    started, release, done = threading.Event(), threading.Event(), []
    errors = []

    def handle(item):
        if item == 'bad':
            raise RuntimeError('boom')
        started.set()
        assert release.wait(10.0)
        done.append(item)

    w = FrameWorker(handle, lambda exc: errors.append(exc) or True)
    try:
        assert not w.busy()
        w.submit('bad')
        w.submit('a')                 # replaces 'bad' if not started, else runs after it
        assert started.wait(10.0) and w.busy()
        w.submit('b')                 # waits in the slot
        w.submit('c')                 # replaces 'b'
        release.set()
    finally:
        w.stop(timeout_s=10.0)
    assert done[0] == 'a' and 'b' not in done and set(done) <= {'a', 'c'}
    assert all(isinstance(e, RuntimeError) for e in errors)


def test_probe_frames_use_the_final_exit():
    assert PROBE_EXIT == NUM_EXITS


def test_frames_count_their_bytes_not_the_links_round_trip(fallback_problem):
    """On a link with delay a frame's time holds the round trip: only the rest is its bytes."""
    logged = []
    link = make_link(fallback_problem)
    link.on_sample = lambda *a: logged.append(a)
    s1, s2 = link.start_probe(1.0, 3000)
    link.probe_result(1.25, s1, True, 0.0, 0.0)
    link.probe_result(1.35, s2, True, 0.0, 0.0)          # round trip 150 ms, 0.1 s per probe
    assert link.rtt_ms == pytest.approx(150.0)
    # a 30 KB frame answered 1.15 s after sending: 1.0 s of bytes, 0.15 s of round trip
    seq = send(link, 2.0, payload=30000)
    assert answer(link, 3.15, seq, 2.0, edge_ms=0.0) is not None
    assert logged[-1][3] == pytest.approx(1.0) and logged[-1][4]
    # a small frame whose time is nearly all round trip is logged, not used
    seq = send(link, 4.0, payload=3000)
    assert answer(link, 4.16, seq, 4.0, edge_ms=0.0) is not None
    assert logged[-1][3] == pytest.approx(0.16) and not logged[-1][4]


def test_an_unresolvable_pair_is_a_lower_bound_not_the_round_trip(fallback_problem):
    """A fast link with delay: the probes' dispersion is within the clock's jitter."""
    logged = []
    link = make_link(fallback_problem)
    link.on_sample = lambda *a: logged.append(a)
    s1, s2 = link.start_probe(1.0, 3000)
    link.probe_result(1.1027, s1, True, 0.0, 0.0)        # 100 ms round trip + 2.7 ms of bytes
    link.probe_result(1.1054, s2, True, 0.0, 0.0)        # 2.7 ms later: under 10 ms
    assert link.rtt_ms == pytest.approx(100.0)
    # not (105.4 ms for two probes: 0.5 Mbit/s for a 10 Mbit/s link), but >= 2 x 10 ms
    assert logged[-1][2] == 2 * wire_bytes(3000) and logged[-1][3] == pytest.approx(0.02)
    est = link.tick(1.2).estimate
    assert est.bps == pytest.approx(2 * wire_bytes(3000) * 8 / 0.02)


def test_a_fast_frame_less_its_round_trip_is_a_lower_bound(fallback_problem):
    """Loopback: 4 ms for a 3 KB frame with a 3 ms round trip is not a 24 Mbit/s measurement."""
    logged = []
    link = make_link(fallback_problem)
    link.on_sample = lambda *a: logged.append(a)
    s1, s2 = link.start_probe(1.0, 3000)
    link.probe_result(1.0031, s1, True, 0.0, 0.0)
    link.probe_result(1.0032, s2, True, 0.0, 0.0)
    assert link.rtt_ms == pytest.approx(3.0)
    seq = send(link, 2.0, payload=3000)
    assert answer(link, 2.004, seq, 2.0, edge_ms=0.0) is not None
    # bytes / 10 ms at most, a bound; used: within 2x of the pair's own bound (2 probes / 20 ms)
    assert logged[-1][3] == pytest.approx(0.01) and logged[-1][4]


def test_lower_bounds_never_pull_a_measured_fast_link_down(fallback_problem):
    """3 KB frames on a 20 Mbit/s link are too short to time: the pair's 20 Mbit/s stays."""
    link = make_link(fallback_problem)
    s1, s2 = link.start_probe(1.0, 30000)
    link.probe_result(1.0150, s1, True, 0.0, 0.0)     # 3 ms round trip + 12 ms of bytes
    link.probe_result(1.0270, s2, True, 0.0, 0.0)     # resolved: 12 ms apart
    fast = link.tick(1.1).estimate.bps
    assert fast == pytest.approx(wire_bytes(30000) * 8 / 0.012)
    for k in range(4):                                # each: 3 ms + 1.2 ms, read as >= 10 ms
        seq = send(link, 2.0 + k, payload=3000)
        answer(link, 2.0042 + k, seq, 2.0 + k, edge_ms=0.0)
    assert link.tick(5.5).estimate.bps == pytest.approx(fast)
    # a bound above the estimate does raise it (the link is at least that fast)
    link.estimator.add_transfer(5.6, 300000, 0.01, source='probe', lower_bound=True)
    assert link.tick(5.7).estimate.bps > fast


# -- several edges (core.edges): moving to another edge ------------------------------------

def test_a_move_to_another_edge_keeps_frames_and_forgets_the_old_probe_pair(fallback_problem):
    link = make_link(fallback_problem)
    seq = send(link, 0.1)
    link.start_probe(0.2, 3072)
    assert not link.reachable(EDGE_TIMEOUT_S + 1.0)
    link.switch_edge(EDGE_TIMEOUT_S + 1.0)
    assert link.reachable(EDGE_TIMEOUT_S + 1.5)      # the new edge was answering pings
    assert link.probe_pair is None
    # the old edge's late answer still finishes its frame, but is not the new edge heard
    t = EDGE_TIMEOUT_S + 1.2
    p = link.result(t, seq, seq, True, 5.0, 0.0, 1, heard=False)
    assert p is not None and p.seq == seq
    assert not link.reachable(2 * EDGE_TIMEOUT_S + 1.1)


def test_ping_sequences_never_collide_with_probe_pairs(fallback_problem):
    link = make_link(fallback_problem)
    pings = [link.next_ping_seq(), link.next_ping_seq()]
    pair = link.start_probe(0.0, 3072)
    assert not set(pings) & set(pair) and sorted(pings + list(pair)) == pings + list(pair)
    assert not link.probe_result(0.05, pings[0], True, 1.0, 0.0)   # not the pair's: ignored


def test_frames_of_an_edge_that_stopped_answering_are_abandoned_alone(fallback_problem):
    link = make_link(fallback_problem)
    seqs = {}
    for k, edge in enumerate(['edge_a', 'edge_b', 'edge_a']):
        seq, busy = link.admit(True, max_in_flight=4)
        link.sent(Pending(seq, 0.1 * k, 0.1 * k, 5, 0, PAYLOAD, 1.0, 1, 200.0, seq, edge))
        seqs.setdefault(edge, []).append(seq)
    gone = link.abandon('edge_a')
    assert sorted(p.seq for p in gone) == seqs['edge_a']
    assert link.ledger.in_flight == 1 and link.loss() > 0
    assert [p.seq for p in link.abandon()] == seqs['edge_b']
