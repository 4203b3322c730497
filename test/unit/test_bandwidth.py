"""Unit tests of the bandwidth estimator, the transfer-time helper and the edge watchdog."""

import math
import random

import pytest

from edgent_ros.core.link import BandwidthEstimator, EdgeWatchdog, Estimate, ProbePair, wire_bytes

PAYLOAD = 100_000    # bytes: a mid-trunk activation


def feed(est: BandwidthEstimator, t0: float, n: int, bps: float, dt: float = 0.1,
         payload: int = PAYLOAD, extra_s: float = 0.0, source: str = 'passive') -> float:
    """Add ``n`` samples at ``bps`` every ``dt`` s from ``t0``; return the time of the last."""
    t = t0
    for k in range(n):
        t = t0 + k * dt
        assert est.add_transfer(t, payload, payload * 8 / bps + extra_s, source)
    return t


def test_constant_rate_converges_exactly():
    est = BandwidthEstimator(window=8, overhead_s=0.0)
    assert est.estimate(0.0) is None
    t = feed(est, 0.0, 20, 20e6)
    e = est.estimate(t)
    assert isinstance(e, Estimate)
    assert e.bps == pytest.approx(20e6)
    assert e.sample_count == 8 and e.uncertainty == pytest.approx(0.0, abs=1e-12)
    assert e.age_s == 0.0 and e.source == 'passive' and e.rtt_ms is None


def test_noisy_rate_converges_and_reports_uncertainty():
    rng = random.Random(3)
    est = BandwidthEstimator(window=16, overhead_s=0.0)
    t = 0.0
    for k in range(200):
        t = 0.05 * k
        est.add_transfer(t, PAYLOAD, PAYLOAD * 8 / 20e6 * rng.uniform(0.9, 1.1))
    e = est.estimate(t)
    assert e.bps == pytest.approx(20e6, rel=0.05)
    assert 0.01 < e.uncertainty < 0.2


def test_single_sample_has_unit_uncertainty():
    est = BandwidthEstimator(overhead_s=0.0)
    est.add_transfer(1.0, PAYLOAD, 0.04)
    e = est.estimate(1.5)
    assert e.sample_count == 1 and e.uncertainty == 1.0
    assert e.bps == pytest.approx(PAYLOAD * 8 / 0.04) and e.age_s == pytest.approx(0.5)


def test_probe_rtt_is_subtracted_as_fixed_cost():
    est = BandwidthEstimator(window=8)        # overhead_s=None: use the smoothed RTT
    est.add_rtt(0.0, 5.0)
    t = feed(est, 0.0, 10, 20e6, extra_s=0.005)
    e = est.estimate(t)
    assert e.bps == pytest.approx(20e6) and e.rtt_ms == pytest.approx(5.0)
    fixed = BandwidthEstimator(window=8, overhead_s=0.005)
    t = feed(fixed, 0.0, 10, 20e6, extra_s=0.005)
    assert fixed.estimate(t).bps == pytest.approx(20e6)
    raw = BandwidthEstimator(window=8, overhead_s=0.0)
    t = feed(raw, 0.0, 10, 20e6, extra_s=0.005)
    assert raw.estimate(t).bps < 20e6 * 0.9    # without it the fixed cost is counted as link


def test_step_drop_is_tracked_in_one_sample():
    est = BandwidthEstimator(window=8, overhead_s=0.0)
    t = feed(est, 0.0, 10, 20e6)
    t = feed(est, t + 0.1, 1, 5e6)
    e = est.estimate(t)
    assert e.bps == pytest.approx(5e6) and e.sample_count == 1
    t = feed(est, t + 0.1, 3, 5e6)
    assert est.estimate(t).bps == pytest.approx(5e6)


def test_step_drop_with_confirmation_is_tracked_in_two_samples():
    est = BandwidthEstimator(window=8, overhead_s=0.0, drop_confirm=2)
    t = feed(est, 0.0, 10, 20e6)
    t = feed(est, t + 0.1, 1, 5e6)
    assert est.estimate(t).bps > 10e6          # one low sample may be an outlier
    t = feed(est, t + 0.1, 1, 5e6)
    e = est.estimate(t)
    assert e.bps == pytest.approx(5e6) and e.sample_count == 2
    # an isolated outlier is absorbed
    t = feed(est, t + 0.1, 8, 20e6)
    t = feed(est, t + 0.1, 1, 5e6)
    t = feed(est, t + 0.1, 1, 20e6)
    assert est.estimate(t).sample_count == 8


def test_small_drop_and_rise_follow_the_window():
    est = BandwidthEstimator(window=4, overhead_s=0.0)
    t = feed(est, 0.0, 4, 20e6)
    t = feed(est, t + 0.1, 1, 15e6)            # above drop_ratio: averaged, not reset
    assert 15e6 < est.estimate(t).bps < 20e6
    est = BandwidthEstimator(window=4, overhead_s=0.0)
    t = feed(est, 0.0, 4, 5e6)
    seen = []
    for _ in range(4):
        t = feed(est, t + 0.1, 1, 20e6)
        seen.append(est.estimate(t).bps)
    assert seen == sorted(seen) and seen[0] < 10e6 and seen[-1] == pytest.approx(20e6)


def test_stale_samples_expire():
    est = BandwidthEstimator(overhead_s=0.0, stale_after_s=2.0)
    feed(est, 0.0, 3, 20e6, dt=1.0)            # samples at 0, 1, 2 s
    assert est.estimate(2.0).sample_count == 3
    assert est.estimate(2.5).sample_count == 2
    assert est.estimate(3.5).sample_count == 1
    assert est.estimate(4.0).sample_count == 1
    assert est.estimate(4.01) is None


def test_small_and_overhead_dominated_samples_are_ignored():
    est = BandwidthEstimator(min_bytes=4096, overhead_s=0.002, min_payload_fraction=0.1)
    assert not est.add_transfer(0.0, 4095, 0.01)
    assert not est.add_transfer(0.1, 3072, 0.01, 'probe')
    assert not est.add_transfer(0.2, 8192, 0.0021)         # 0.1 ms of 2.1 ms is payload
    assert not est.add_transfer(0.3, 8192, 0.0015)         # faster than the fixed cost
    assert est.estimate(0.3) is None
    assert est.add_transfer(0.4, 8192, 0.004)
    assert est.estimate(0.4).bps == pytest.approx(8192 * 8 / 0.002)


def test_needs_probe_timing():
    est = BandwidthEstimator(probe_after_s=2.0, overhead_s=0.0)
    assert est.needs_probe(0.0)                # nothing measured yet
    est.add_transfer(1.0, PAYLOAD, 0.04)
    assert not est.needs_probe(1.0) and not est.needs_probe(2.99)
    assert est.needs_probe(3.0)
    est.add_transfer(3.5, 100, 0.01)           # too small to measure: does not count
    assert est.needs_probe(3.5)
    est.add_transfer(3.6, PAYLOAD, 0.04, source='probe')
    assert not est.needs_probe(4.0)
    assert est.estimate(4.0).source == 'probe'
    assert not est.needs_probe(5.5) and est.needs_probe(5.7)


def test_no_probe_while_frames_use_the_link_unless_they_bring_no_sample():
    est = BandwidthEstimator(probe_after_s=1.0, overhead_s=0.0)
    est.add_transfer(10.0, PAYLOAD, 0.5)
    assert est.needs_probe(11.2)                               # quiet link, stale sample
    assert not est.needs_probe(11.2, in_flight=1)              # a frame brings a sample
    assert not est.needs_probe(11.2, last_send_s=10.5)         # one just went: it queues
    assert est.needs_probe(11.6, last_send_s=10.5)
    # frames too small to measure would hold probes off for ever: 2 x probe_after_s at most
    assert est.needs_probe(12.0, in_flight=1, last_send_s=11.9)


def test_rtt_smoothing_and_staleness():
    est = BandwidthEstimator(stale_after_s=5.0, rtt_alpha=0.25)
    assert est.rtt_ms(0.0) is None
    est.add_rtt(0.0, 4.0)
    est.add_rtt(1.0, 8.0)
    assert est.rtt_ms(1.0) == pytest.approx(5.0)
    assert est.rtt_ms(6.0) == pytest.approx(5.0) and est.rtt_ms(6.01) is None
    est.add_rtt(20.0, 10.0)                    # after a stale gap the average restarts
    assert est.rtt_ms(20.0) == 10.0


def test_transfer_seconds():
    assert BandwidthEstimator.transfer_seconds(10.0, 10.05, 0.01) == pytest.approx(0.04)
    for args in ((10.0, 10.01, 0.01), (10.0, 9.9, 0.0), (10.0, 10.05, -0.01),
                 (math.nan, 10.0, 0.0), (0.0, math.inf, 0.0), ('0', 1.0, 0.0)):
        with pytest.raises(ValueError):
            BandwidthEstimator.transfer_seconds(*args)


@pytest.mark.parametrize('args, match', [
    ((1.0, -1, 0.01), 'payload_bytes'),
    ((1.0, 1.5, 0.01), 'payload_bytes'),
    ((1.0, PAYLOAD, 0.0), 'transfer_s'),
    ((1.0, PAYLOAD, math.inf), 'transfer_s'),
    ((1.0, PAYLOAD, 0.01, 'guess'), 'source'),
    ((math.nan, PAYLOAD, 0.01), 'now_s'),
    ((0.5, PAYLOAD, 0.01), 'backwards'),
])
def test_add_transfer_rejects_bad_input(args, match):
    est = BandwidthEstimator()
    est.add_transfer(1.0, PAYLOAD, 0.01)
    with pytest.raises(ValueError, match=match):
        est.add_transfer(*args)


def test_add_rtt_rejects_bad_input():
    est = BandwidthEstimator()
    for rtt in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match='rtt_ms'):
            est.add_rtt(1.0, rtt)
    est.add_rtt(2.0, 1.0)
    with pytest.raises(ValueError, match='backwards'):
        est.add_rtt(1.0, 1.0)
    est.reset()
    est.add_rtt(1.0, 1.0)


@pytest.mark.parametrize('kw', [dict(window=0), dict(window=2.5), dict(min_bytes=-1),
                                dict(overhead_s=-0.1), dict(stale_after_s=0.0),
                                dict(probe_after_s=math.nan), dict(drop_ratio=1.0),
                                dict(drop_confirm=0), dict(drop_confirm=9, window=8),
                                dict(rtt_alpha=1.5), dict(min_payload_fraction=1.0)])
def test_constructor_rejects_bad_parameters(kw):
    with pytest.raises(ValueError):
        BandwidthEstimator(**kw)


def test_edge_watchdog():
    dog = EdgeWatchdog(timeout_s=1.0)
    assert not dog.reachable(0.0) and dog.silence_s(0.0) is None
    dog.heard(10.0)
    assert dog.reachable(10.5) and dog.reachable(11.0)
    assert not dog.reachable(11.01)
    dog.heard(9.0)                             # late report of an older reply: ignored
    assert dog.silence_s(11.0) == pytest.approx(1.0)
    dog.heard(11.5)
    assert dog.reachable(12.0)
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match='timeout_s'):
            EdgeWatchdog(bad)
    with pytest.raises(ValueError, match='now_s'):
        dog.heard(math.nan)


def test_arrival_uses_the_middleware_reception_time():
    from edgent_ros.core.link import arrival_s
    now_wall = 1_800_000_000_000_000_000
    # received 0.25 s before the callback ran: arrival 0.25 s before now on the monotonic clock
    assert arrival_s(100.0, now_wall, {'received_timestamp': now_wall - 250_000_000}) == \
        pytest.approx(99.75)
    for info in (None, {}, {'received_timestamp': 0}, {'received_timestamp': 'x'},
                 {'received_timestamp': now_wall + 10**9},        # in the future
                 {'received_timestamp': now_wall - 60 * 10**9}):  # implausibly old
        assert arrival_s(100.0, now_wall, info) == 100.0


def test_small_payloads_count_when_the_transfer_is_slow():
    """A 1 KB frame that took 160 ms is a link measurement; one that took 3 ms is overhead."""
    from edgent_ros.core.link import BandwidthEstimator
    est = BandwidthEstimator(min_bytes=2048, overhead_s=0.0, slow_transfer_s=0.04)
    assert not est.add_transfer(0.0, 1000, 0.003)
    assert est.add_transfer(1.0, 1000, 0.16)
    assert est.estimate(1.0).bps == pytest.approx(8000 / 0.16)
    assert not est.needs_probe(1.5)
    plain = BandwidthEstimator(min_bytes=2048, overhead_s=0.0)
    assert not plain.add_transfer(0.0, 1000, 0.16)
    with pytest.raises(ValueError):
        BandwidthEstimator(slow_transfer_s=0.0)


def _token_bucket_exits(sent_s, sizes, bps, burst_bytes, rtt_s):
    """When each back-to-back message leaves a tbf-shaped link (full bucket at ``sent_s``)."""
    t, free, out = sent_s, burst_bytes, []
    for n in sizes:
        passed = min(free, n)
        free -= passed
        t += (n - passed) * 8 / bps
        out.append(t + rtt_s)
    return out


def test_probe_pair_measures_the_rate_that_a_single_probe_after_idle_overstates():
    bps, nbytes, edge_s = 50e3, 3072, 0.006
    wire = wire_bytes(nbytes)                          # what the shaper counts: 3,530 B
    assert wire == 3530
    exits = _token_bucket_exits(10.0, [wire, wire], bps, burst_bytes=1514, rtt_s=0.03)
    single = wire * 8 / (exits[0] - 10.0)
    assert single > 1.5 * bps                          # the burst inflates one probe
    pair = ProbePair(10.0, (7, 8), nbytes)
    assert pair.result(7, exits[0] + edge_s, edge_s) is None and not pair.complete()
    got, took, kind = pair.result(8, exits[1] + 2 * edge_s, 2 * edge_s)   # queued behind 7
    assert pair.complete() and kind == 'pair' and got == wire
    assert got * 8 / took == pytest.approx(bps, rel=1e-9)   # the link's rate, headers counted
    est = BandwidthEstimator(min_bytes=2048, overhead_s=0.0)
    assert est.add_transfer(exits[1], got, took, 'probe')
    assert est.estimate(exits[1]).bps == pytest.approx(bps)


def test_probe_pair_on_a_fast_link_is_a_train():
    bps, nbytes = 20e6, 3072
    wire = wire_bytes(nbytes)
    exits = _token_bucket_exits(0.0, [wire, wire], bps, burst_bytes=1514, rtt_s=0.002)
    pair = ProbePair(0.0, (1, 2), nbytes, min_dispersion_s=0.01)
    pair.result(1, exits[0], 0.0)
    got, took, kind = pair.result(2, exits[1], 0.0)
    assert kind == 'train' and got == 2 * wire and took == pytest.approx(exits[1])


def test_wire_bytes_match_the_testbed_capture():
    # BENCHMARKS.md section 11: payload -> bytes on the shaped link, measured to the byte
    for payload, wire in ((64, 454), (256, 646), (512, 902), (1024, 1414), (3072, 3530)):
        assert wire_bytes(payload) == wire
    assert wire_bytes(1124) == 1514                    # one full-size frame
    assert wire_bytes(1125) == 1515 + 34               # one byte more: a second IP fragment
    assert wire_bytes(3072, message_bytes=0) == 3072   # the paper's payload-only model
    assert wire_bytes(0) == 390
    with pytest.raises(ValueError, match='payload_bytes'):
        wire_bytes(-1)


def test_probe_pair_refused_or_repeated_answers_give_no_sample():
    pair = ProbePair(0.0, (1, 2), 3072)
    assert pair.result(1, 0.5, 0.0, ok=False) is None and pair.complete()
    assert pair.result(2, 1.0, 0.0) is None            # a refused half spoils the pair
    pair = ProbePair(0.0, (1, 2), 3072)
    assert pair.result(1, 0.5, 0.0) is None
    assert pair.result(1, 0.6, 0.0) is None            # a duplicate answer is ignored
    assert pair.result(2, 1.0, 0.0)[2] == 'pair'
    with pytest.raises(ValueError, match='not one of this pair'):
        pair.result(9, 1.0, 0.0)
    assert pair.owns(2) and not pair.owns(3)


@pytest.mark.parametrize('kwargs', [dict(seqs=(1, 1)), dict(seqs=(1,)), dict(nbytes=0),
                                    dict(nbytes=True), dict(min_dispersion_s=0.0),
                                    dict(sent_s=math.inf)])
def test_probe_pair_rejects_bad_arguments(kwargs):
    args = dict(sent_s=0.0, seqs=(1, 2), nbytes=3072)
    args.update(kwargs)
    with pytest.raises(ValueError):
        ProbePair(**args)


def test_arrival_clock_never_goes_back_for_a_repaired_sample():
    """A sample held back for the repair of the one before it was received earlier than it."""
    from edgent_ros.core.link import ArrivalClock
    clock = ArrivalClock()
    wall = 2_000_000_000_000
    # sample n: repaired, received 50 ms ago; sample n+1: received 200 ms ago, delivered after
    t1 = clock(100.0, wall, {'received_timestamp': wall - 50_000_000})
    t2 = clock(100.001, wall + 1_000_000, {'received_timestamp': wall - 200_000_000})
    assert t1 == pytest.approx(99.95) and t2 == t1
    est = BandwidthEstimator()
    est.add_transfer(t1, 4000, 0.05)
    est.add_transfer(t2, 4000, 0.05)            # no 'now_s went backwards'
    t3 = clock(101.0, wall + 1_000_000_000, {})  # no stamp: now
    assert t3 == 101.0
