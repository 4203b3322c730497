"""The on-time-probability rule (core.chance) against the brute-force oracle and a Monte Carlo."""

import math
import random

import numpy as np
import pytest

from edgent_ros.core.chance import (Belief, check_spread, decide_chance, evaluate_chance,
                                    MAX_RATIO_SAMPLES, on_time_probability, spread_quantiles,
                                    with_prior)
from edgent_ros.core.optimizer import (brute_force, decide, EdgentProblem, evaluate,
                                       Hysteresis, POLICIES)


def random_problem(rng: random.Random) -> EdgentProblem:
    """Return a small random problem: 1-3 exits of 1-5 layers, payloads 100 B - 20 KB."""
    acc, robot, edge, nbytes = {}, {}, {}, {}
    for e in range(1, rng.randint(1, 3) + 1):
        n = rng.randint(1, 5)
        acc[e] = round(rng.random(), 3)
        robot[e] = [rng.uniform(0.5, 20.0) for _ in range(n)]
        edge[e] = [rng.uniform(0.1, 3.0) for _ in range(n)]
        nbytes[e] = [rng.randint(100, 20000) for _ in range(n)] + [0]
    return EdgentProblem(acc, robot, edge, nbytes, overhead_ms=rng.uniform(0.0, 3.0),
                         message_bytes=390)


def test_without_uncertainty_the_rule_is_the_deterministic_one():
    rng = random.Random(17)
    sure = Belief(0.0, (), (), 0.99)
    assert sure.deterministic
    checked = 0
    for _ in range(150):
        p = random_problem(rng)
        lats = sorted(evaluate(p, 1e6, e, s).total_ms for e in p.exits
                      for s in range(p.branch_len(e) + 1))
        for bw in (0.0, 10 ** rng.uniform(4, 8), math.inf):
            for d in (rng.choice(lats), rng.uniform(0.1, 2 * lats[-1]), 1e-3, math.inf):
                got = decide_chance(p, 'edgent', bw, d, sure)
                ref = brute_force(p, bw, d)
                assert (got.key, got.feasible) == (ref.key, ref.feasible), (got, ref)
                assert got.total_ms == pytest.approx(ref.total_ms)
                assert got.key == decide(p, bw, d).key
                for policy in POLICIES[1:]:
                    assert decide_chance(p, policy, bw, d, sure).key == \
                        brute_force(p, bw, d, policy).key
                checked += 1
    assert checked == 150 * 12


def monte_carlo(p: EdgentProblem, bw: float, deadline: float, belief: Belief, n: int,
                rng: np.random.Generator) -> np.ndarray:
    """P(on time) of every configuration by sampling the belief's model frame by frame."""
    t = p._t
    dev = np.asarray(belief.device_ratios or [1.0])
    edg = np.asarray(belief.edge_ratios or [1.0])
    a = rng.choice(dev / np.median(dev), n)
    b = rng.choice(edg / np.median(edg), n)
    rate = bw * np.exp(belief.log_sigma * rng.standard_normal(n))
    out = []
    for i in range(len(t.acc)):
        lat = t.device_ms[i] * a
        if t.offload[i]:
            lat = lat + t.bits_k[i] / rate + p.overhead_ms + (t.edge_ms[i] + p.edge_queue_ms) * b
        out.append(np.mean(lat <= deadline))
    return np.asarray(out)


def test_probabilities_and_choice_match_a_monte_carlo_of_the_same_model():
    rng = random.Random(5)
    gen = np.random.default_rng(5)
    n = 40000
    compared = 0
    for _ in range(25):
        p = random_problem(rng)
        belief = Belief(rng.uniform(0.05, 1.0),
                        [math.exp(rng.gauss(0, 0.2)) for _ in range(rng.randint(5, 30))],
                        [math.exp(rng.gauss(0, 0.5)) for _ in range(rng.randint(5, 30))],
                        rng.choice([0.9, 0.95, 0.99]))
        bw = 10 ** rng.uniform(5, 7)
        lats = sorted(evaluate(p, bw, e, s).total_ms for e in p.exits
                      for s in range(p.branch_len(e) + 1))
        deadline = rng.uniform(lats[0], lats[-1] * 1.5)
        exact = on_time_probability(p, bw, deadline, belief)
        mc = monte_carlo(p, bw, deadline, belief, n, gen)
        tol = 4.5 * np.sqrt(np.maximum(exact * (1 - exact), 1e-4) / n) + 1e-3
        assert np.all(np.abs(exact - mc) <= tol), (exact, mc)
        # the choice: most accurate with P >= target, judged on the Monte Carlo's numbers,
        # unless a probability is too close to the target for the sample to tell
        if np.any(np.abs(mc - belief.target) <= tol):
            continue
        t = p._t
        ok = mc >= belief.target
        got = decide_chance(p, 'edgent', bw, deadline, belief)
        assert got.feasible == bool(ok.any())
        if ok.any():
            assert t.acc[t.index[got.key]] == t.acc[ok].max()
        compared += 1
    assert compared >= 15


def test_uncertainty_makes_the_choice_more_conservative():
    # one exit, cut or not: at the median rate the frame fits with 5 % to spare; with a
    # spread of 0.3 in log-rate it is on time far less than 99 % of the time
    p = EdgentProblem({1: 0.6, 2: 0.8}, {1: [1.0], 2: [1.0, 40.0]}, {1: [0.1], 2: [0.1, 0.1]},
                      {1: [3000, 0], 2: [3000, 3000, 0]}, overhead_ms=0.0)
    bw = 8 * 3000 / 0.0095          # exit 2 edge-only: 9.5 ms of link + 0.2 ms of edge
    point = decide(p, bw, 10.0)
    assert point.key == (2, 0, 'raw')
    sure = decide_chance(p, 'edgent', bw, 10.0, Belief(0.0))
    assert sure.key == point.key and sure.feasible
    unsure = decide_chance(p, 'edgent', bw, 10.0, Belief(0.3))
    assert unsure.key == (1, 1, 'raw') and unsure.feasible      # exit 1 on the robot, 1 ms
    assert 'P 1.0000' in unsure.reason
    # the reason says what was passed over: exit 2 edge-only, on time with P < 0.99
    assert 'more accurate: exit 2 split 0 raw P 0.' in unsure.reason
    assert 'more accurate' not in sure.reason                   # the most accurate was taken
    judged = evaluate_chance(p, bw, 2, 0, 10.0, 'raw', Belief(0.3))
    assert not judged.feasible and judged.total_ms == pytest.approx(point.total_ms)
    # the compute spread counts as well: the robot sometimes 20x slower makes exit 1 miss
    slow = Belief(0.0, [1.0] * 49 + [20.0], (), 0.99)
    assert on_time_probability(p, bw, 10.0, slow)[p._t.index[(1, 1, 'raw')]] == \
        pytest.approx(0.98)


def test_hysteresis_with_the_chance_rule_leaves_a_configuration_that_became_unlikely():
    p = EdgentProblem({1: 0.6, 2: 0.8}, {1: [1.0], 2: [1.0, 40.0]}, {1: [0.1], 2: [0.1, 0.1]},
                      {1: [3000, 0], 2: [3000, 3000, 0]}, overhead_ms=0.0)
    bw = 8 * 3000 / 0.0095
    h = Hysteresis(min_dwell_s=10.0)

    def step(now, belief):
        return h.update(now, p, bw, 10.0,
                        choose=lambda q, pol, b, d: decide_chance(q, pol, b, d, belief),
                        judge=lambda q, b, e, s, d, enc: evaluate_chance(q, b, e, s, d, enc,
                                                                         belief))
    assert step(0.0, Belief(0.0)).decision.key == (2, 0, 'raw')
    moved = step(1.0, Belief(0.3))              # within dwell, but no longer likely on time
    assert moved.switched and moved.decision.key == (1, 1, 'raw')


@pytest.mark.parametrize('kw', [dict(log_sigma=-0.1), dict(log_sigma=math.inf),
                                dict(target=1.0), dict(target=0.0)])
def test_belief_rejects_bad_values(kw):
    with pytest.raises(ValueError):
        Belief(**kw)


def test_a_robot_spread_prior_is_planned_until_live_frames_push_it_out():
    prior = check_spread([0.8, 1.0, 1.0, 1.5, 2.0])
    assert prior[2] == 1.0 and prior[-1] == 2.0          # divided by its median
    start = with_prior(prior, [])
    assert len(start) == MAX_RATIO_SAMPLES and max(start) > 1.5 and min(start) < 0.9
    # live ratios on another scale (the planner's factor is in the calibrated problem): only
    # their spread enters, so a live median of 0.6 adds no bias
    mixed = with_prior(prior, [0.6] * 20)
    assert len(mixed) == MAX_RATIO_SAMPLES and mixed[-20:] == [1.0] * 20
    assert max(mixed) > 1.5                              # 44 prior quantiles still in
    assert with_prior(prior, [0.6] * 64) == [1.0] * 64   # pushed out
    assert with_prior((1.0,), [0.6, 0.9]) == pytest.approx([0.6 / 0.75, 0.9 / 0.75])
    assert with_prior((1.0,), []) == []                  # no prior, no frame: deterministic
    # the rule: exit 2 on the robot takes 41 ms of a 45 ms deadline; with the prior's tail
    # (2x its median in one frame of 5) it is not on time for 99 % of frames
    p = EdgentProblem({1: 0.6, 2: 0.8}, {1: [10.0], 2: [1.0, 40.0]}, {1: [0.1], 2: [0.1, 0.1]},
                      {1: [3000, 0], 2: [3000, 3000, 0]}, overhead_ms=0.0)
    assert decide_chance(p, 'edgent', 0.0, 45.0, Belief(0.0, with_prior((1.0,), []))).key == \
        (2, 2, 'raw')
    assert decide_chance(p, 'edgent', 0.0, 45.0, Belief(0.0, start)).key == (1, 1, 'raw')


@pytest.mark.parametrize('bad', [[], [1.0, -0.5], [1.0, math.nan], ['x'], [1.0] * 257])
def test_a_bad_robot_spread_is_refused(bad):
    with pytest.raises(ValueError, match='robot spread'):
        check_spread(bad)


def test_a_long_prior_is_planned_whole_not_its_last_64_ratios():
    # 256 ratios, the slow ones first: the planned quantiles span all of them
    prior = check_spread([2.0] * 64 + [1.0] * 192)
    start = with_prior(prior, [])
    assert len(start) == MAX_RATIO_SAMPLES and max(start) == 2.0


def test_the_spread_keeps_its_slowest_ratio():
    # one frame in 300 at 2.5x the median: quantiles at mid-points would drop it, and the
    # rule plans for the 99th percentile
    q = spread_quantiles([1.0] * 299 + [2.5], 32)
    assert len(q) == 32 and q[0] == 1.0 and q[-1] == 2.5
    assert max(with_prior(q, [])) == 2.5
    assert spread_quantiles([0.5, 1.0, 4.0], 1) == [1.0]
