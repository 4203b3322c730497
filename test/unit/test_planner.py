"""The planner's decision logic without ROS (core.planner): time passed in, no sleeps."""

import math

import pytest

from edgent_ros.core.config_map import ConfigMap, MapStrategy
from edgent_ros.core.optimizer import (decide, decide_policy, EdgentProblem, evaluate,
                                       PLANNER_POLICIES, POLICIES)
from edgent_ros.core.planner import LinkReport, Outcome, parse_fixed, Planner, REPUBLISH_MOVE
from edgent_ros.offline.map_builder import build_map

ACC = {1: 0.70, 2: 0.80, 3: 0.85}
# exit e: e layers of 10 ms on the robot, 1 ms on the edge; the input is 25 kB, features 1 kB
PROBLEM = EdgentProblem(ACC, {e: [10.0] * e for e in ACC}, {e: [1.0] * e for e in ACC},
                        {e: [25_000] + [1_000] * (e - 1) + [0] for e in ACC}, 2.0)


def planner(**kw) -> Planner:
    """Return a planner on ``PROBLEM``: deadline 25 ms, no calibration, no dwell (unless set)."""
    args = dict(deadline_ms=25.0, calibration=False, min_dwell_s=0.0)
    args.update(kw)
    return Planner(PROBLEM, **args)


def heard(p: Planner, now_s: float, bps: float, **kw):
    """Give ``p`` one link estimate at ``now_s`` and return its ``plan``."""
    p.add_link(now_s, LinkReport(bps, **kw))
    return p.plan(now_s, 'link quality')


def device_only(d) -> bool:
    return d.split_index == PROBLEM.branch_len(d.exit_index)


@pytest.mark.parametrize('policy', POLICIES)
@pytest.mark.parametrize('bps', [0.0, 0.2e6, 0.5e6, 2e6, 10e6, 1e9])
def test_first_decision_is_the_policy_rule(policy, bps):
    p = planner(policy=policy)
    up = heard(p, 0.0, bps)
    want = decide_policy(PROBLEM, policy, bps, 25.0)
    assert up.changed and up.decision.key == want.key and p.decision == up.decision
    assert up.shown.config == want.config and up.shown.bandwidth_bps == bps
    assert up.log.startswith('decision (link quality; initial choice): exit')


def test_baselines_differ_from_edgent_where_the_paper_says():
    # fast link: Edgent offloads after one layer of exit 3; device-only cannot reach exit 3
    assert heard(planner(), 0.0, 10e6).decision.config == (3, 1)
    assert heard(planner(policy='device-only'), 0.0, 10e6).decision.config == (2, 2)
    assert heard(planner(policy='edge-only'), 0.0, 10e6).decision.config == (3, 0)


def test_true_bandwidth_policy_plans_with_the_true_bandwidth_not_the_estimate():
    p = planner(policy='true-bandwidth', true_bandwidth_bps=10e6)
    up = heard(p, 0.0, 0.0)        # the estimate says link down: ignored
    assert up.decision.config == decide(PROBLEM, 10e6, 25.0).config == (3, 1)
    assert up.why == 'true bandwidth'
    assert p.configure(true_bandwidth_bps=0.5e6)   # re-plan at once
    up = p.plan(1.0, 'parameter change', force=True)
    assert up.changed and up.decision.config == decide(PROBLEM, 0.5e6, 25.0).config
    assert p.plan(1.1, 'timer') is None            # nothing moved: nothing to publish
    # under another policy the true bandwidth is only stored
    q = planner()
    assert not q.configure(true_bandwidth_bps=1e6)


def test_fixed_policy_runs_its_configuration_whatever_the_link():
    p = planner(policy='fixed', fixed_configuration='3/2')
    for t, bps in enumerate((0.0, 0.05e6, 10e6, 1e9)):
        heard(p, float(t), bps)
        assert p.decision.config == (3, 2) and p.decision.encoding == 'raw'
    # its prediction is that configuration's at the estimate: infeasible is reported, kept
    up = heard(p, 10.0, 0.05e6)
    want = evaluate(PROBLEM, 0.05e6, 3, 2, 25.0)
    assert p.decision.total_ms == pytest.approx(want.total_ms) and not p.decision.feasible
    assert up is None or up.decision.config == (3, 2)
    assert p.configure(fixed_configuration='1/0')      # a new pin re-plans at once
    up = p.plan(11.0, 'parameter change', force=True)
    assert up.changed and up.decision.config == (1, 0) and up.why == 'fixed configuration'
    assert p.configure(policy='edgent')                # back to Edgent
    assert p.plan(12.0, 'parameter change', force=True).decision.config != (1, 0)


@pytest.mark.parametrize('text, why', [
    ('', 'needs fixed_configuration'), ('3', 'exit/split'), ('a/b', 'exit/split'),
    ('3/2/1/0', 'exit/split'), ('9/0', 'exit'), ('3/7', 'split'), ('3/1/int8', 'encoding')])
def test_fixed_policy_refuses_a_configuration_it_cannot_run(text, why):
    with pytest.raises(ValueError, match=why):
        planner(policy='fixed', fixed_configuration=text)
    p = planner()
    with pytest.raises(ValueError, match=why):
        p.configure(policy='fixed', fixed_configuration=text)
    assert p.policy == 'edgent' and p.fixed_configuration == ''   # nothing changed
    assert parse_fixed('4/2/int8') == (4, 2, 'int8') and parse_fixed(' ') is None


def test_a_pin_with_an_encoding_is_checked_against_the_problem_set_with_it():
    """A pin e/s/enc set with the encodings that make it exist: checked on the new problem."""
    from dataclasses import replace
    from edgent_ros.core.optimizer import Variant
    coded = replace(PROBLEM, variants={(3, 1): (Variant('int8', 0.7, 100),)})
    p = planner()
    with pytest.raises(ValueError, match='encoding'):
        p.check(policy='fixed', fixed_configuration='3/1/int8')     # not in the old problem
    p.check(coded, policy='fixed', fixed_configuration='3/1/int8')
    assert p.configure(coded, policy='fixed', fixed_configuration='3/1/int8')
    up = p.plan(1.0, 'parameter change', force=True)
    assert up.decision.key == (3, 1, 'int8')
    # back to Edgent without that encoding: the pin left over does not block it
    assert p.configure(PROBLEM, policy='edgent')
    with pytest.raises(ValueError, match='encoding'):
        p.configure(policy='fixed')                     # but pinning it again is refused


def test_hysteresis_does_not_flap_on_jitter_at_a_decision_boundary():
    # a bandwidth where Edgent's choice differs between a and a + 10 %
    grid = [0.05e6 * 1.02 ** k for k in range(300)]
    a = next(b for b in grid if decide(PROBLEM, b, 25.0).key != decide(PROBLEM, 1.1 * b, 25.0).key)
    p = planner()
    assert heard(p, 0.0, a).changed
    first = p.decision.key
    for k in range(1, 41):
        up = heard(p, float(k), a * (1.1 if k % 2 else 1.0))
        assert up is None or not up.changed, up
        assert p.decision.key == first


def test_dwell_holds_a_non_urgent_switch_until_it_has_passed():
    grid = [0.05e6 * 1.02 ** k for k in range(300)]
    # the choice at 1.6 a differs, and the one at a stays feasible there (not an urgent switch)
    a = next(b for b in grid if decide(PROBLEM, b, 25.0).feasible
             and decide(PROBLEM, b, 25.0).key != decide(PROBLEM, 1.6 * b, 25.0).key)
    p = planner(min_dwell_s=5.0)
    heard(p, 0.0, a)
    first = p.decision.key
    up = heard(p, 1.0, 1.6 * a)
    assert (up is None or not up.changed) and p.decision.key == first
    up = heard(p, 4.9, 1.6 * a)
    assert p.decision.key == first
    up = heard(p, 5.1, 1.6 * a)
    assert up.changed and p.decision.key == decide(PROBLEM, 1.6 * a, 25.0).key
    assert 'bandwidth moved' in up.why


def test_link_timeout_plans_device_only():
    p = planner(link_timeout_s=3.0)
    assert heard(p, 0.0, 10e6).decision.config == (3, 1)
    assert p.bandwidth_bps(2.9) == 10e6 and p.bandwidth_bps(3.1) == 0.0
    assert p.plan(2.9, 'timer') is None          # still fresh, nothing changed
    up = p.plan(3.1, 'timer')                    # stale: the link is presumed down
    assert up.changed and device_only(up.decision)
    assert up.decision.config == decide(PROBLEM, 0.0, 25.0).config
    assert math.isinf(evaluate(PROBLEM, 0.0, 3, 1).transfer_ms)
    # a fresh estimate brings offloading back (bandwidth rose from 0: moved > rel_change)
    assert heard(p, 4.0, 10e6).decision.config == (3, 1)
    # link_timeout_s is a setting too
    p.configure(link_timeout_s=100.0)
    assert p.bandwidth_bps(50.0) == 10e6


@pytest.mark.parametrize('report', [LinkReport(10e6, edge_reachable=False),
                                    LinkReport(math.nan), LinkReport(-5.0)])
def test_edge_unreachable_or_a_bad_estimate_plans_device_only(report):
    p = planner()
    heard(p, 0.0, 10e6)
    p.add_link(1.0, report)
    up = p.plan(1.0, 'link quality')
    assert p.bandwidth_bps(1.0) == 0.0
    assert up.changed and device_only(up.decision)


def test_newest_fresh_source_wins_and_carries_the_edge_load():
    p = planner(batch_factor=lambda b: 0.5 * b)
    p.add_link(0.0, LinkReport(10e6, edge_queue_ms=3.0, edge_batch_size=4.0), 'a')
    p.add_link(1.0, LinkReport(0.5e6), 'b')
    assert p.bandwidth_bps(1.0) == 0.5e6 and p.edge_queue_ms(1.0) == 0.0
    p.add_link(2.0, LinkReport(10e6, edge_queue_ms=3.0, edge_batch_size=4.0), 'a')
    assert p.bandwidth_bps(2.0) == 10e6 and p.edge_queue_ms(2.0) == 3.0
    assert p.edge_batch_factor(2.0) == 2.0
    up = p.plan(2.0, 'link quality')
    want = evaluate(PROBLEM, 10e6, *up.decision.config)
    # edge layers x 2 (batch of 4) plus the 3 ms queue
    assert up.shown.edge_ms == pytest.approx(2 * (want.edge_ms - PROBLEM.edge_queue_ms) + 3.0)
    p.configure(edge_batching=False)
    assert p.edge_batch_factor(2.0) == 1.0
    assert planner().edge_batch_factor(0.0) == 1.0    # no batch model: not scaled


def test_calibration_moves_the_decision():
    # no link: device-only; 35 ms allow exit 3 on the robot (30 ms) by the model
    p = planner(deadline_ms=35.0, calibration=True)
    assert p.plan(0.0, 'start').decision.config == (3, 3)
    # the robot measures twice the model on that configuration
    for k in range(5):
        assert p.add_outcome(0.1 * k, Outcome(3, 3, device_ms=60.0, end_to_end_ms=61.0,
                                              finished_on_edge=False))
    assert p.factors(1.0, 0.99)['device'] == pytest.approx(2.0, rel=0.05)
    up = p.plan(1.0, 'timer')
    # exit 3 (60 ms) and exit 2 (40 ms) now miss 35 ms: exit 1 on the robot
    assert up.changed and up.decision.config == (1, 1) and up.decision.feasible
    assert up.shown.device_ms == pytest.approx(20.0, rel=0.05)   # reported at the median
    assert 'calibration x' in up.log
    # samples expire after the window: back to the model
    assert p.factors(1000.0, 0.99) == {'device': 1.0, 'offload': 1.0}
    # switching calibration off ignores outcomes and plans with the model again
    p.configure(calibration=False)
    assert not p.add_outcome(1000.0, Outcome(3, 3, 60.0, 61.0, False))
    assert p.plan(1000.0, 'timer').decision.config == (3, 3)


def test_calibration_off_then_on_starts_afresh():
    """Off discards the learned ratios (the sweep's same start state for every policy)."""
    p = planner(deadline_ms=35.0, calibration=True)
    for k in range(5):
        p.add_outcome(0.1 * k, Outcome(3, 3, device_ms=60.0, end_to_end_ms=61.0,
                                       finished_on_edge=False))
    assert p.factors(1.0, 0.99)['device'] == pytest.approx(2.0, rel=0.05)
    p.configure(calibration_quantile=0.9)              # other settings keep the samples
    assert p.factors(1.0, 0.9)['device'] == pytest.approx(2.0, rel=0.05)
    p.configure(calibration=False)
    p.configure(calibration=True)
    assert p.factors(1.0, 0.99) == {'device': 1.0, 'offload': 1.0}
    assert p.plan(1.0, 'timer').decision.config == (3, 3)   # the model's choice again


def test_calibration_ignores_frames_it_cannot_compare():
    p = planner(calibration=True)
    assert not p.add_outcome(0.0, Outcome(3, 3, 60.0, 61.0, False, ok=False))
    # left at a confident side exit: faster than its configuration
    assert not p.add_outcome(0.0, Outcome(1, 3, 20.0, 21.0, False, requested_exit_index=3))
    assert not p.add_outcome(0.0, Outcome(9, 0, 20.0, 21.0, True))        # unknown exit
    assert not p.add_outcome(0.0, Outcome(3, 1, 10.0, 30.0, True, encoding='jpeg'))
    # an offloaded frame calibrates the offloaded part too
    heard(p, 0.0, 10e6)
    for k in range(5):
        assert p.add_outcome(0.1 * k, Outcome(3, 1, 10.0, 10.0 + 2 * 17.0, True))
    assert p.factors(1.0, 0.99)['offload'] > 1.5


def test_republish_only_when_the_prediction_moves():
    p = planner(rel_change=0.5)
    up = heard(p, 0.0, 10e6)
    base = up.shown.total_ms
    # a small bandwidth move keeps the configuration and the prediction within 5 %
    assert heard(p, 1.0, 9.9e6) is None
    # edge load the edge reports moves the predicted total by more than 5 %
    up = heard(p, 2.0, 10e6, edge_queue_ms=3.0)
    assert up is not None and not up.changed and up.decision.config == (3, 1)
    assert abs(up.shown.total_ms - base) > REPUBLISH_MOVE * base
    # a parameter change republishes even when nothing moved
    assert p.plan(3.0, 'parameter change', force=True).changed


def test_map_strategy_follows_the_detected_state():
    trace = [(1.0, 10.0)] * 50 + [(1.0, 0.5)] * 50
    cmap = MapStrategy(ConfigMap(build_map(PROBLEM, {'t': trace}, [25.0])))
    p = planner(strategy='map', cmap=cmap)
    for k in range(5):
        up = heard(p, float(k), 10e6)
    assert p.decision.config == (3, 1) and p.decision.reason.startswith('map state')
    assert up is None or not up.changed
    up = p.plan(100.0, 'timer')                  # link timed out: device-only
    assert up.changed and up.decision.config == decide(PROBLEM, 0.0, 25.0).config == (2, 2)
    assert 'no bandwidth estimate' in up.decision.reason
    for k in range(101, 108):
        heard(p, float(k), 0.5e6)
    assert p.decision.config == (2, 2) and cmap.switches == 1
    assert p.decision.reason.startswith('map state')
    # back to per-sample at run time: the map forgets its state
    assert p.configure(strategy='per-sample') and cmap.state is None
    assert heard(p, 101.0, 10e6).decision.config == (3, 1)
    assert p.decision.reason.startswith('edgent')


def test_map_strategy_only_for_the_edgent_policy():
    cmap = MapStrategy(ConfigMap(build_map(PROBLEM, {'t': [(1.0, 10.0)] * 10}, [25.0])))
    p = planner(strategy='map', cmap=cmap, policy='device-only')
    assert heard(p, 0.0, 10e6).decision.config == (2, 2)


def test_settings_are_checked_and_a_refused_change_changes_nothing():
    for kw, match in ((dict(policy='clairvoyant'), "'clairvoyant'"),
                      (dict(strategy='psychic'), "'psychic'"),
                      (dict(strategy='map'), 'config_map_path'),
                      (dict(deadline_ms=-1.0), 'deadline')):
        with pytest.raises(ValueError, match=match):
            planner(**kw)
        p = planner()
        with pytest.raises(ValueError, match=match):
            p.check(**kw)
        with pytest.raises(ValueError, match=match):
            p.configure(**kw)
        assert (p.policy, p.strategy, p.deadline_ms) == ('edgent', 'per-sample', 25.0)
    with pytest.raises(ValueError, match='unknown'):
        planner().configure(colour='blue')
    assert 'true-bandwidth' in PLANNER_POLICIES


def test_deadline_policy_and_problem_changes_replan_at_once():
    p = planner()
    heard(p, 0.0, 0.5e6)
    assert p.configure(deadline_ms=100.0)
    up = p.plan(0.1, 'parameter change', force=True)
    assert up.changed and up.decision.config == decide(PROBLEM, 0.5e6, 100.0).config
    assert p.configure(policy='edge-only')
    assert p.plan(0.2, 'parameter change', force=True).decision.config == (3, 0)
    # a new base problem (e.g. other encodings): planned with at once, hysteresis forgotten
    faster = EdgentProblem(ACC, {e: [1.0] * e for e in ACC}, {e: [1.0] * e for e in ACC},
                           {e: [25_000] + [1_000] * (e - 1) + [0] for e in ACC}, 2.0)
    assert p.configure(faster, policy='edgent')
    up = p.plan(0.3, 'parameter change', force=True)
    assert up.decision.config == decide(faster, 0.5e6, 100.0).config
    assert not p.configure(calibration_quantile=0.5)


def test_chance_rule_uses_the_link_spread_and_the_measured_compute_spread():
    # exit 3 cut after layer 1: 10 + 1,390 B at 1 Mbit/s (11.1 ms) + 2 + 2 = 25.1 ms > 25; at
    # 1.2 Mbit/s 23.3 ms: fits by 7 % at the median rate
    bw = 1.2e6
    assert evaluate(PROBLEM, bw, 3, 1, 25.0).feasible
    sure = planner()
    assert heard(sure, 0.0, bw, bandwidth_uncertainty=0.0).decision.config == (3, 1)
    # the same median with the spread a noisy link gives (cv 0.3): exit 3 is on time far less
    # than 99 % of the time, exit 2 on the robot (20 ms) always
    unsure = planner()
    up = heard(unsure, 0.0, bw, bandwidth_uncertainty=0.3)
    assert up.decision.config == (2, 2) and up.decision.feasible
    assert unsure.link_sigma(0.0) == pytest.approx(math.sqrt(math.log(1.09)))
    assert 'P(on time) target 0.99' in up.log
    # the rule of the point estimate takes the cut whatever the spread
    point = planner(decision_rule='point')
    assert heard(point, 0.0, bw, bandwidth_uncertainty=0.3).decision.config == (3, 1)
    # measured robot compute spread: 1 frame in 10 takes 1.3x its median, so exit 2 on the
    # robot (20 ms median, 26 ms then) misses 25 ms 10 % of the time: the planner goes lower
    cal = planner(calibration=True)
    for k in range(20):
        cal.add_outcome(0.1 * k, Outcome(2, 2, 20.0 * (1.3 if k % 10 == 0 else 1.0), 20.0,
                                         False))
    up = heard(cal, 3.0, 0.0)       # link down: device-only choices only
    assert up.decision.config == (1, 1)
    assert heard(planner(calibration=True), 3.0, 0.0).decision.config == (2, 2)


@pytest.mark.parametrize('kw', [dict(decision_rule='median'), dict(on_time_target=1.0),
                                dict(on_time_target=0.2)])
def test_chance_settings_are_checked(kw):
    with pytest.raises(ValueError):
        planner(**kw)
    with pytest.raises(ValueError):
        planner().configure(**kw)


def test_a_measured_round_trip_is_planned_into_every_offloaded_frame():
    """A link with delay: 10 ms each way makes offloading late under a 35 ms deadline."""
    from dataclasses import replace
    p = planner(deadline_ms=35.0)
    up = heard(p, 0.0, 10e6)
    assert up.decision.config == decide(PROBLEM, 10e6, 35.0).config == (3, 1)
    assert not device_only(up.decision)
    assert p.fixed_ms(0.0) == PROBLEM.overhead_ms           # no RTT known: the configured cost
    up = heard(p, 1.0, 10e6, rtt_ms=21.3)                   # 10 ms each way + middleware
    assert p.fixed_ms(1.0) == 25.0                          # rounded up to 5 ms steps
    want = decide(replace(PROBLEM, overhead_ms=25.0), 10e6, 35.0)
    assert p.decision.config == want.config == (3, 3)       # offloading is late now
    assert p.decision.total_ms == pytest.approx(want.total_ms)
    heard(p, 2.0, 10e6, rtt_ms=0.5)                         # below the configured floor
    assert p.fixed_ms(2.0) == PROBLEM.overhead_ms
    heard(p, 3.0, 10e6, rtt_ms=float('nan'))
    assert p.fixed_ms(3.0) == PROBLEM.overhead_ms


def test_a_robot_spread_prior_is_planned_before_the_robots_frames_are_measured():
    # link down, deadline 25 ms: exit 2 on the robot takes 20 ms; a prior measured before start
    # says 1 frame in 4 takes 1.5x its median (30 ms), so the planner starts at exit 1
    prior = [1.0, 1.0, 1.0, 1.5]
    p = planner(calibration=True, robot_time_spread=prior)
    assert p.robot_time_spread == (1.0, 1.0, 1.0, 1.5)
    assert heard(p, 0.0, 0.0).decision.config == (1, 1)
    assert heard(planner(calibration=True), 0.0, 0.0).decision.config == (2, 2)
    # the robot's own frames show no such tail: once they fill the window the prior is gone
    for k in range(64):
        p.add_outcome(0.01 * k, Outcome(1, 1, 10.0, 10.0, False))
    assert heard(p, 1.0, 0.0).decision.config == (2, 2)
    # a prior is a setting of its own: calibration off keeps it (no measured ratio is used)
    off = planner(robot_time_spread=prior)
    assert heard(off, 0.0, 0.0).decision.config == (1, 1)
    with pytest.raises(ValueError, match='robot spread'):
        planner(robot_time_spread=[1.0, 0.0])
