"""Packet-loss repairs in the planner (core.repairs, core.chance, core.planner)."""

import math
import random

import numpy as np
import pytest

from edgent_ros.core.chance import Belief, decide_chance, on_time_probability
from edgent_ros.core.optimizer import EdgentProblem, evaluate
from edgent_ros.core.planner import LinkReport, Outcome, Planner
from edgent_ros.core.repairs import packets, PACKET_BYTES, RepairEstimator, wait_probability


def test_packets_and_wait_probability():
    assert packets(1) == 2 and packets(PACKET_BYTES) == 2 and packets(PACKET_BYTES + 1) == 3
    assert packets(3072) == 4
    q = wait_probability(0.05, np.array([0, 1, 4]))
    assert q == pytest.approx([0.0, 0.05, 1 - 0.95 ** 4])
    assert wait_probability(0.0, np.array([10]))[0] == 0.0


def test_estimator_learns_the_per_packet_probability_and_the_cost():
    est = RepairEstimator(min_frames=10)
    rng = np.random.default_rng(3)
    assert est.estimate(0.0) == (0.0, ())
    late = 0
    for k in range(200):
        wait = rng.random() < 1 - 0.98 ** 4          # 3 KB frames: 4 packets, p = 2 %
        late += wait
        est.add(k * 0.1, 3072, rng.normal(0.0, 3.0) + (300.0 if wait else 0.0))
    p, costs = est.estimate(20.0)
    assert p == pytest.approx(late / (200 * 4))
    assert 0.01 < p < 0.035
    assert len(costs) == min(late, est.max_costs)
    assert all(280 < c < 320 for c in costs)
    # a clean link: no late frame, nothing to plan for
    clean = RepairEstimator(min_frames=10)
    for k in range(50):
        clean.add(k, 3072, rng.normal(0.0, 5.0))
    assert clean.estimate(50.0) == (0.0, ())
    # old frames are forgotten; too few frames say nothing
    assert est.estimate(20.0 + est.window_s + 30.0) == (0.0, ())
    assert not est.add(0.0, 3072, math.nan)
    with pytest.raises(ValueError):
        RepairEstimator(min_frames=0)


ACC = {1: 0.70, 2: 0.80, 3: 0.85}
# exit e: e layers of 100 ms on the robot, 1 ms on the edge; the input 3 kB, features 20 kB
PROBLEM = EdgentProblem(ACC, {e: [100.0] * e for e in ACC}, {e: [1.0] * e for e in ACC},
                        {e: [3_000] + [20_000] * (e - 1) + [0] for e in ACC}, 200.0)


def monte_carlo(p, bw, deadline, belief, n, gen):
    """P(on time) per configuration, sampling the model frame by frame (repairs included)."""
    t = p._t
    rate = bw * np.exp(belief.log_sigma * gen.standard_normal(n))
    costs = np.asarray(belief.repair_ms, dtype=float)
    out = []
    for i in range(len(t.acc)):
        lat = np.full(n, t.device_ms[i])
        if t.offload[i]:
            q = 1 - (1 - belief.repair_p) ** packets(t.link_bytes[i])
            wait = gen.random(n) < q
            lat = lat + t.bits_k[i] / rate + p.overhead_ms + t.edge_ms[i] + \
                np.where(wait, gen.choice(costs, n), 0.0)
        out.append(np.mean(lat <= deadline))
    return np.asarray(out)


def test_repair_probability_matches_a_monte_carlo_and_spares_device_only():
    gen = np.random.default_rng(11)
    rng = random.Random(11)
    for _ in range(12):
        belief = Belief(rng.uniform(0.05, 0.6), target=0.99, repair_p=rng.uniform(0.001, 0.1),
                        repair_ms=[rng.uniform(100, 400) for _ in range(3)])
        bw = 10 ** rng.uniform(5.5, 7)
        deadline = rng.uniform(150, 700)
        exact = on_time_probability(PROBLEM, bw, deadline, belief)
        mc = monte_carlo(PROBLEM, bw, deadline, belief, 40000, gen)
        tol = 4.5 * np.sqrt(np.maximum(exact * (1 - exact), 1e-4) / 40000) + 1e-3
        assert np.all(np.abs(exact - mc) <= tol), (exact, mc)
        clean = on_time_probability(PROBLEM, bw, deadline, Belief(belief.log_sigma))
        t = PROBLEM._t
        assert np.all(exact[~t.offload] == clean[~t.offload])   # nothing sent, nothing lost
        assert np.all(exact[t.offload] <= clean[t.offload] + 1e-12)


def test_a_frame_of_more_packets_waits_more_often():
    belief = Belief(0.0, target=0.9, repair_p=0.01, repair_ms=[1000.0])
    p = on_time_probability(PROBLEM, 1e9, 400.0, belief)
    t = PROBLEM._t
    small = t.index[(3, 0, 'raw')]     # 3 kB: 4 packets
    big = t.index[(3, 1, 'raw')]       # 20 kB: 16 packets
    assert p[small] == pytest.approx(0.99 ** 4)
    assert p[big] == pytest.approx(0.99 ** packets(t.link_bytes[big]))
    assert p[big] < p[small]


def test_known_repairs_move_a_deadline_bound_frame_to_the_robot():
    clean = decide_chance(PROBLEM, 'edgent', 10e6, 260.0, Belief(0.0, target=0.99))
    assert clean.config == (3, 0)      # 200 ms RTT + 2.4 ms + 3 ms; exit 3 on the robot: 300 ms
    lossy = Belief(0.0, target=0.99, repair_p=0.02, repair_ms=[300.0])
    d = decide_chance(PROBLEM, 'edgent', 10e6, 260.0, lossy)
    assert d.config == (2, 2) and d.feasible           # P 0.98 ** 4 < 0.99 on the edge
    assert 'repair p 0.0200' in d.reason


def test_belief_rejects_bad_repair_values():
    with pytest.raises(ValueError, match='repair_p'):
        Belief(repair_p=1.0)
    with pytest.raises(ValueError, match='repair_ms'):
        Belief(repair_p=0.1, repair_ms=[-1.0])


def _lossy_run(repair_model: bool, seed: int = 2):
    """Run a planner on a 100 ms-each-way link whose frames wait 300 ms 20 % of the time."""
    rng = random.Random(seed)
    p = Planner(PROBLEM, deadline_ms=260.0, min_dwell_s=0.0, repair_model=repair_model)
    now, configs = 0.0, []
    for k in range(80):
        now += 0.25
        p.add_link(now, LinkReport(10e6, rtt_ms=200.0))
        p.plan(now, 'timer')                            # None when nothing to publish
        d = p.decision
        configs.append(d.config)
        offloaded = d.split_index < PROBLEM.branch_len(d.exit_index)
        pred = evaluate(p.model_problem, 10e6, d.exit_index, d.split_index)
        late = offloaded and rng.random() < 0.2
        p.add_outcome(now, Outcome(d.exit_index, d.split_index, device_ms=pred.device_ms,
                                   end_to_end_ms=pred.total_ms + (300.0 if late else 0.0),
                                   finished_on_edge=offloaded, edge_ms=pred.edge_ms))
    return p, configs


def test_the_planner_learns_repairs_from_late_frames_and_leaves_the_link():
    p, configs = _lossy_run(True)
    assert configs[0] == (3, 0)                         # starts on the edge: nothing known
    prob, costs = p.repairs.estimate(20.0)
    assert prob > 0 and all(250 < c < 350 for c in costs)
    assert configs[-20:] == [(2, 2)] * 20               # moved to the robot, and stays there
    # without the model the same late frames change nothing: it keeps offloading
    _, blind = _lossy_run(False)
    assert set(blind) == {(3, 0)}
    # calibration off (the sweep's reset) forgets the repairs too
    p.configure(calibration=False)
    assert p.repairs.estimate(20.0) == (0.0, ())


def test_frames_that_crossed_an_outage_are_not_repairs_and_the_planner_comes_back():
    """A link that stops for 5 s then carries again: the planner offloads again at once."""
    def run(est: RepairEstimator):
        p = Planner(PROBLEM, deadline_ms=260.0, min_dwell_s=0.0)
        p.repairs = est
        now, configs, stalled = 0.0, [], []
        for k in range(60):
            now += 0.25
            down = 5.0 <= now < 10.0
            p.add_link(now, LinkReport(0.0 if down else 10e6))
            if not down:
                # the frames sent just before the outage arrive seconds late, when it ends
                for outcome in stalled:
                    p.add_outcome(now, outcome)
                stalled = []
            p.plan(now, 'timer')
            d = p.decision
            configs.append((now, d.config))
            offloaded = d.split_index < PROBLEM.branch_len(d.exit_index)
            pred = evaluate(p.model_problem, 10e6, d.exit_index, d.split_index)
            late = offloaded and 4.25 <= now < 5.0
            outcome = Outcome(d.exit_index, d.split_index, device_ms=pred.device_ms,
                              end_to_end_ms=pred.total_ms + (3000.0 + 1000.0 * (k % 3)
                                                             if late else 0.0),
                              finished_on_edge=offloaded, edge_ms=pred.edge_ms)
            if late:
                stalled.append(outcome)
            else:
                p.add_outcome(now, outcome)
        return p, configs

    p, configs = run(RepairEstimator())
    when = dict(configs)
    assert when[4.0] == (3, 0) and when[7.0] == (2, 2)   # edge-only, then the robot
    after = [c for t, c in configs if t >= 10.5]
    assert after == [(3, 0)] * len(after)                 # back to the edge with the link
    assert p.repairs.estimate(15.0) == (0.0, ()) and p.repairs.stalls == 3
    # counted as repairs (the estimator before), the stalled frames keep it on the robot
    old, configs = run(RepairEstimator(max_repair_ms=1e9))
    assert old.repairs.estimate(15.0)[0] > 0
    after = [c for t, c in configs if t >= 10.5]
    assert after == [(2, 2)] * len(after)
    with pytest.raises(ValueError, match='max_repair_ms'):
        RepairEstimator(min_late_ms=50.0, max_repair_ms=40.0)
