"""Unit tests of the online latency calibration (pure logic) and ``optimizer.calibrate``."""

import math

import pytest

from edgent_ros.core.calibration import LatencyCalibration
from edgent_ros.core.optimizer import calibrate, decide, EdgentProblem, evaluate


def test_factor_is_one_until_enough_samples_then_the_quantile():
    c = LatencyCalibration(min_samples=5)
    for k in range(4):
        c.add(float(k), 'device', 10.0, 20.0)
    assert c.factor(4.0, 'device') == 1.0
    c.add(4.0, 'device', 10.0, 20.0)
    assert c.factor(4.0, 'device') == pytest.approx(2.0)
    assert c.factor(4.0, 'offload') == 1.0
    for k, r in enumerate([1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9, 2.0]):
        c.add(10.0 + k, 'offload', 100.0, 100.0 * r)
    assert c.factor(21.0, 'offload', 0.5) == pytest.approx(1.5)
    assert c.factor(21.0, 'offload', 1.0) == pytest.approx(2.0)
    assert c.factor(21.0, 'offload', 0.95) == pytest.approx(1.95)


def test_samples_expire_and_factors_are_clipped():
    c = LatencyCalibration(window_s=10.0, min_samples=1, max_factor=3.0, min_factor=0.5)
    c.add(0.0, 'device', 1.0, 50.0)
    assert c.factor(5.0, 'device') == 3.0
    assert c.count(20.0, 'device') == 0 and c.factor(20.0, 'device') == 1.0
    c.add(30.0, 'offload', 100.0, 1.0)
    assert c.factor(30.0, 'offload') == 0.5


@pytest.mark.parametrize('pred, meas', [(0.1, 5.0), (math.nan, 5.0), (5.0, math.inf),
                                        (5.0, 0.0), (5.0, -1.0)])
def test_unusable_samples_are_ignored(pred, meas):
    c = LatencyCalibration(min_samples=1)
    assert not c.add(0.0, 'device', pred, meas)
    assert c.count(0.0, 'device') == 0


def test_bad_arguments():
    with pytest.raises(ValueError):
        LatencyCalibration(min_factor=2.0)
    with pytest.raises(ValueError):
        LatencyCalibration().add(0.0, 'wifi', 1.0, 1.0)
    with pytest.raises(ValueError):
        LatencyCalibration().factor(0.0, 'device', 1.5)


def _problem():
    return EdgentProblem({1: 0.5, 2: 0.8}, {1: [10.0, 10.0], 2: [10.0, 20.0, 30.0]},
                         {1: [1.0, 1.0], 2: [1.0, 2.0, 3.0]},
                         {1: [3072, 1000, 0], 2: [3072, 5000, 2000, 0]}, overhead_ms=2.0)


def test_calibrate_scales_device_and_offloaded_parts_exactly():
    p = _problem()
    c = calibrate(p, 2.0, 1.5)
    bw = 1e6
    for e, n in ((1, 2), (2, 3)):
        for s in range(n + 1):
            a = evaluate(p, bw, e, s)
            b = evaluate(c, bw / 1.5, e, s)
            assert b.device_ms == pytest.approx(2.0 * a.device_ms)
            assert b.transfer_ms + b.edge_ms == pytest.approx(1.5 * (a.transfer_ms + a.edge_ms))
    assert calibrate(p, 1.0, 1.0) == p
    with pytest.raises(ValueError):
        calibrate(p, 0.0, 1.0)


def test_a_high_quantile_steps_down_to_what_meets_the_deadline():
    """A device-only choice predicted at the deadline, measured 10 % slower: exit 1 instead."""
    p = _problem()
    assert decide(p, 0.0, 60.0).config == (2, 3)          # 60 ms predicted, deadline 60
    assert decide(calibrate(p, 1.1, 1.0), 0.0, 60.0).config == (1, 2)
