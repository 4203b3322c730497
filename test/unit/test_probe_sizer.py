"""Probe pairs that grow until a fast link's rate is measurable, and lower-bound samples."""

import types

import pytest

from edgent_ros.core.camera_link import CameraLink, FallbackPlanner
from edgent_ros.core.codec import (CodecError, check_padding, is_padding, MAX_PADDING_BYTES,
                                   PADDING_ENCODING, padding_probe)
from edgent_ros.core.artifacts import read_config
from edgent_ros.core.link import (BOUND_FLOOR, camera_estimator, ProbeSizer,
                                  RobustBandwidthEstimator, wire_bytes)


def test_sizer_grows_while_unresolved_up_to_the_cap():
    sizer = ProbeSizer(3072, 1_000_000)
    assert sizer.nbytes == 3072 and not sizer.padded
    sizes = [sizer.update('train', 0.02) for _ in range(6)]
    assert sizes == [12288, 49152, 196608, 786432, 1_000_000, 1_000_000]
    assert sizer.padded


def test_sizer_keeps_a_resolved_pair_and_shrinks_a_slow_one():
    sizer = ProbeSizer(3072, 1 << 20)
    sizer.update('train', 0.02)
    sizer.update('train', 0.02)                    # 49152
    assert sizer.update('pair', 0.012) == 49152    # 10-40 ms apart: the right size
    assert sizer.update('pair', 0.039) == 49152
    assert sizer.update('pair', 0.2) == 12288      # the link slowed: a quarter
    assert sizer.update('pair', 0.5) == 3072       # never below the frame probe
    assert sizer.update('pair', 0.5) == 3072


def test_sizer_off_and_refusals():
    off = ProbeSizer(3072, 0)                      # probe_max_bytes 0: frame probes only
    assert off.update('train', 0.02) == 3072 and not off.padded
    sizer = ProbeSizer(3072, 1 << 20)
    sizer.update('train', 0.02)
    sizer.update('train', 0.02)                    # 49152: an edge refuses padding
    assert sizer.refused() == 12288                # capped at the size below
    assert sizer.update('train', 0.02) == 12288
    sizer = ProbeSizer(3072, 1 << 20)
    sizer.update('train', 0.02)
    assert sizer.refused() == 3072 and not sizer.padded   # an edge older than padding
    assert sizer.update('train', 0.02) == 3072
    assert sizer.refused() == 3072                 # a refused frame probe caps nothing


@pytest.mark.parametrize('kwargs', [dict(base_bytes=0, max_bytes=10), dict(base_bytes=10,
                                    max_bytes=-1), dict(base_bytes=10, max_bytes=10, growth=1),
                                    dict(base_bytes=10, max_bytes=10, min_dispersion_s=0)])
def test_sizer_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        ProbeSizer(**kwargs)
    with pytest.raises(ValueError):
        ProbeSizer(10, 100).update('ping', 0.01)


def test_lower_bounds_far_below_the_estimate_are_left_out():
    est = RobustBandwidthEstimator(min_bytes=0, overhead_s=0.0)
    for k in range(5):                             # 1 MB in 10 ms: 800 Mbit/s
        assert est.add_transfer(k * 0.1, 1_000_000, 0.01, source='probe')
    fast = est.estimate(0.5).bps
    # 3 KB frames "in 10 ms" (too short to time): at least 2.4 Mbit/s, which says nothing
    for k in range(5):
        assert not est.add_transfer(0.6 + k * 0.1, 3000, 0.01, lower_bound=True)
    assert est.estimate(1.1).bps == pytest.approx(fast)
    # the same transfers as measurements are a real drop: confirmed, the estimate follows
    for k in range(5):
        est.add_transfer(1.2 + k * 0.1, 3000, 0.01)
    assert est.estimate(1.7).bps < 0.01 * fast


def test_a_bound_near_or_above_the_estimate_counts_and_is_never_a_drop():
    est = RobustBandwidthEstimator(min_bytes=0, overhead_s=0.0, drop_confirm=2, quantile=0.9)
    for k in range(5):
        est.add_transfer(k * 0.1, 100_000, 0.01)   # 80 Mbit/s
    # bounds at 0.6x: within BOUND_FLOOR, so counted, but never read as a confirmed drop
    assert 0.6 > BOUND_FLOOR
    for k in range(4):
        assert est.add_transfer(0.5 + k * 0.1, 60_000, 0.01, lower_bound=True)
    assert est.estimate(0.9).bps > 0.7 * 80e6
    assert est.add_transfer(1.0, 1_000_000, 0.01, lower_bound=True)   # 800 Mbit/s: raises
    assert est.estimate(1.0).bps > 80e6
    empty = camera_estimator()
    assert empty.add_transfer(0.0, 3000, 0.01, lower_bound=True)       # nothing better known
    assert empty.estimate(0.0).bps == pytest.approx(2.4e6)


def test_padding_probe_fields_and_checks():
    enc = padding_probe(5_000_000)
    assert enc.shape == (5_000_000,) and enc.data_type == 2 and enc.nbytes == 5_000_000
    assert enc.wire_name == PADDING_ENCODING
    msg = types.SimpleNamespace(probe=True, encoding=PADDING_ENCODING, data=enc.data,
                                data_type=2, shape=[5_000_000])
    assert is_padding(msg) and check_padding(msg, 8 << 20) == 5_000_000
    assert not is_padding(types.SimpleNamespace(probe=False, encoding=PADDING_ENCODING))
    assert not is_padding(types.SimpleNamespace(probe=True, encoding='raw'))
    with pytest.raises(CodecError) as exc:
        check_padding(msg, 1 << 20)
    assert exc.value.reason == 'too_large'
    with pytest.raises(CodecError) as exc:
        check_padding(types.SimpleNamespace(data=b'\0' * 8, data_type=9, shape=[2]))
    assert exc.value.reason == 'shape'
    for bad in (0, -1, MAX_PADDING_BYTES + 1, 1.5, True):
        with pytest.raises(ValueError):
            padding_probe(bad)


@pytest.fixture(scope='module')
def fallback_problem():
    cfg = read_config(None)
    return FallbackPlanner.load(cfg, cfg.model_id()).problem


def test_camera_link_grows_unresolved_pairs_and_measures_the_fast_link(fallback_problem):
    """Loopback at 5 Gbit/s: 3 KB pairs are a bound; the pairs grow until 10 ms apart."""
    link = CameraLink(0.0, camera_estimator(), FallbackPlanner(fallback_problem),
                      probe_sizer=ProbeSizer(3072, 8 << 20))
    rate, t = 5e9, 1.0
    sizes = []
    for _ in range(10):
        nbytes = link.probe_bytes()
        sizes.append(nbytes)
        gap = wire_bytes(nbytes) * 8 / rate
        s1, s2 = link.start_probe(t, nbytes)
        link.probe_result(t + 0.0005 + gap, s1, True, 0.0, 0.0)
        link.probe_result(t + 0.0005 + 2 * gap, s2, True, 0.0, 0.0)
        t += 1.0
    assert sizes[:7] == [3072, 12288, 49152, 196608, 786432, 3145728, 8 << 20]
    est = link.tick(t).estimate
    assert rate / 2 <= est.bps <= 2 * rate, est
    assert link.rtt_ms == pytest.approx(0.5, abs=0.01)


def test_camera_link_caps_the_pairs_an_edge_refuses(fallback_problem):
    link = CameraLink(0.0, camera_estimator(), FallbackPlanner(fallback_problem),
                      probe_sizer=ProbeSizer(3072, 8 << 20))
    s1, s2 = link.start_probe(1.0, link.probe_bytes())
    link.probe_result(1.001, s1, True, 0.0, 0.0)
    link.probe_result(1.0011, s2, True, 0.0, 0.0)      # unresolved: padding next
    assert link.probe_bytes() == 12288
    s1, s2 = link.start_probe(2.0, 12288)
    link.probe_result(2.001, s1, False, 0.0, 0.0)      # an edge without padding refuses it
    assert link.probe_bytes() == 3072
    assert link.probe_sizer.max_bytes == 3072
    assert CameraLink(0.0, camera_estimator(),
                      FallbackPlanner(fallback_problem)).probe_bytes() is None


def test_a_padded_pair_goes_at_once_and_its_round_trip_comes_from_a_ping(fallback_problem):
    link = CameraLink(0.0, camera_estimator(), FallbackPlanner(fallback_problem),
                      probe_sizer=ProbeSizer(3072, 8 << 20))
    assert link.tick(0.5).probe_due and not link.probe_now()
    s1, s2 = link.start_probe(1.0, 3072)
    link.probe_result(1.002, s1, True, 0.0, 0.0)
    assert not link.probe_now()                        # the pair is still out
    link.probe_result(1.0021, s2, True, 0.0, 0.0)      # unresolved: 12 KB next, now
    assert link.probe_now() and link.tick(1.01).probe_due
    rtt = link.rtt_ms
    ping = link.start_ping(1.1)
    s1, s2 = link.start_probe(1.1, 12288)
    assert not link.probe_now() and ping < s1 < s2
    # the padded pair's first takes 30 ms (megabytes of copies): not a round trip
    link.probe_result(1.1015, ping, True, 1.0, 0.0)    # 1.5 ms less 1 ms at the edge
    assert link.rtt_ms == pytest.approx(0.5, abs=0.05) and link.rtt_ms != rtt
    link.probe_result(1.13, s1, True, 0.0, 0.0)
    link.probe_result(1.15, s2, True, 0.0, 0.0)        # resolved, 20 ms apart
    assert link.rtt_ms == pytest.approx(0.5, abs=0.05)
    assert not link.probe_now() and link.probe_bytes() == 12288


def test_a_padded_pair_waits_for_the_frames_on_the_link(fallback_problem):
    """Frames queue behind a megabyte pair: it goes only when none is waiting for the edge."""
    from edgent_ros.core.ledger import Pending
    link = CameraLink(0.0, camera_estimator(), FallbackPlanner(fallback_problem),
                      probe_sizer=ProbeSizer(3072, 8 << 20))
    s1, s2 = link.start_probe(1.0, 3072)
    link.probe_result(1.002, s1, True, 0.0, 0.0)
    link.probe_result(1.0021, s2, True, 0.0, 0.0)      # unresolved: a padded pair is wanted
    seq, _ = link.admit(True, 2)
    link.sent(Pending(seq, 1.003, 1.003, 5, 0, 3072, 1.0, 1, 200.0, stamp_ns=seq))
    assert not link.probe_now() and not link.tick(1.01).probe_due
    assert link.tick(3.5).probe_due is False           # not even after 2 x probe_after_s
    link.result(1.02, seq, seq, True, 1.0, 0.0, 1)
    link.finish('ok_edge', True)
    assert link.probe_now() and link.tick(1.03).probe_due
    # frame-sized pairs are not held (as before): only padding waits
    small = CameraLink(0.0, camera_estimator(), FallbackPlanner(fallback_problem),
                       probe_sizer=ProbeSizer(3072, 8 << 20))
    seq, _ = small.admit(True, 2)
    small.sent(Pending(seq, 0.5, 0.5, 5, 0, 3072, 1.0, 1, 200.0, stamp_ns=seq))
    assert small.tick(2.6).probe_due                   # 2 x probe_after_s without a sample


def test_bounds_far_below_keep_the_estimate_from_going_stale():
    """Small frames too fast to time, for longer than the staleness: the estimate stands."""
    est = camera_estimator()                       # forgets samples after 5 s
    for k in range(3):
        est.add_transfer(k * 0.1, 1_000_000, 0.01, source='probe')
    fast = est.estimate(0.3).bps
    for k in range(40):                            # 10 s of 3 KB frames, each a bound
        assert not est.add_transfer(0.5 + k * 0.25, 3000, 0.01, lower_bound=True)
    assert est.estimate(10.5).bps == pytest.approx(fast)
    assert est.estimate(16.0) is None              # no transfer at all: stale as before
    assert est.needs_probe(10.5)                   # bounds do not hold the probes off
