"""Change-point detector (issue 10) on synthetic signals with known change points."""

import math

import numpy as np
import pytest

from edgent_ros.core.changepoint import BOCPD, evaluate_detector


def _steps(levels, seg, noise, seed=0):
    rng = np.random.default_rng(seed)
    sig, changes = [], []
    for i, level in enumerate(levels):
        if i:
            changes.append(len(sig))
        sig += list(np.exp(np.log(level) + rng.normal(0, noise, seg)))
    return sig, changes


@pytest.mark.parametrize('noise', [0.1, 0.2, 0.3])
def test_steps_are_detected_fast_without_false_alarms(noise):
    sig, changes = _steps([2.0, 0.3, 1.0, 5.0, 0.1, 2.0], 40, noise)
    r = evaluate_detector(sig, changes, BOCPD())
    assert r['detected'] == 5 and r['missed'] == 0
    assert r['max_delay'] <= 2 and r['false_alarms'] == 0


def test_an_outage_is_a_change_and_so_is_the_recovery():
    sig = [2.0] * 30 + [0.0] * 10 + [2.0] * 30
    r = evaluate_detector(sig, [30, 40], BOCPD())
    assert r['detected'] == 2 and r['max_delay'] <= 1 and r['false_alarms'] == 0


@pytest.mark.parametrize('seed', [1, 2, 3])
def test_stationary_noise_raises_few_false_alarms(seed):
    rng = np.random.default_rng(seed)
    sig = list(np.exp(rng.normal(0.0, 0.35, 1000)))   # noise as wide as sigma
    r = evaluate_detector(sig, [], BOCPD())
    assert r['false_alarm_rate_per_100'] <= 0.5


def test_ramp_is_tracked():
    rng = np.random.default_rng(0)
    ramp = np.linspace(math.log(0.1), math.log(5.0), 100)
    d = BOCPD()
    levels = [d.update(float(x)).level_mbps for x in np.exp(ramp + rng.normal(0, 0.1, 100))]
    err = np.abs(np.log(levels) - ramp)
    assert np.median(err) < 0.4 and err[-1] < 0.6


def test_level_and_reset_and_bad_input():
    d = BOCPD()
    first = d.update(3.0)
    assert first.change and first.level_mbps == pytest.approx(3.0)
    for _ in range(20):
        s = d.update(3.0)
    assert not s.change and s.level_mbps == pytest.approx(3.0, rel=1e-6) and s.run_length >= 10
    d.reset()
    assert d.update(0.5).level_mbps == pytest.approx(0.5)
    for bad in (-1.0, float('nan'), float('inf'), 'x', True):
        with pytest.raises(ValueError):
            d.update(bad)
    for kw in ({'hazard': 0.0}, {'sigma': -1.0}, {'threshold': 1.5}, {'window': 0},
               {'max_run': 2, 'window': 3}, {'drift_window': 1}):
        with pytest.raises(ValueError):
            BOCPD(**kw)
