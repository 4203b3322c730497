"""Unit tests of the online phase: Edgent decision, baselines, evaluation and hysteresis."""

import dataclasses
import math
import random
from typing import List

import pytest

from edgent_ros.core.optimizer import (brute_force, burst_wire, decide, decide_policy, Decision,
                                       EdgentProblem, evaluate, Hysteresis, LINK_DOWN_BPS,
                                       PLANNER_POLICIES, POLICIES, relative_change, scale_robot)

INF = math.inf
ACC5 = {1: 0.62, 2: 0.70, 3: 0.75, 4: 0.78, 5: 0.82}


class FlopsLatency:
    """Duck-typed latency model: fixed GFLOP/s per host plus a per-layer cost (ms)."""

    def __init__(self, robot_gflops: float = 2.0, edge_gflops: float = 50.0):
        self.rate = {'robot': robot_gflops * 1e9, 'edge': edge_gflops * 1e9}
        self.calls: List[tuple] = []

    def branch_layer_ms(self, host: str, cfg, exit_index: int) -> List[float]:
        from edgent_ros.core.arch import layer_table
        self.calls.append((host, exit_index))
        per_layer = 0.05 if host == 'robot' else 0.01
        return [r.flops / self.rate[host] * 1e3 + per_layer for r in layer_table(cfg, exit_index)]


@pytest.fixture(scope='module')
def alexnet():
    """Return the shipped-width 5-exit AlexNet problem with flops-based latencies."""
    from edgent_ros.offline.training import SHIPPED_CONFIG
    return EdgentProblem.from_model(SHIPPED_CONFIG, ACC5, FlopsLatency(), overhead_ms=1.0)


def small_problem(**kw) -> EdgentProblem:
    """Two exits: exit 1 (2 layers, 0.5) and exit 2 (3 layers, 0.8)."""
    args = dict(accuracy={1: 0.5, 2: 0.8},
                robot_ms={1: [1.0, 2.0], 2: [1.0, 2.0, 3.0]},
                edge_ms={1: [0.1, 0.2], 2: [0.1, 0.2, 0.3]},
                split_bytes={1: [3072, 1000, 0], 2: [3072, 5000, 2000, 0]},
                overhead_ms=1.0)
    args.update(kw)
    return EdgentProblem(**args)


def random_problem(rng: random.Random) -> EdgentProblem:
    """Return a random problem; integer-valued latencies half the time, to force exact ties."""
    k = rng.randint(1, 6)
    exits = sorted(rng.sample(range(1, 10), k)) if rng.random() < 0.3 else list(range(1, k + 1))
    integral = rng.random() < 0.5
    acc_pool = [round(rng.random(), 2) for _ in range(3)]

    def ms() -> float:
        return float(rng.randint(0, 5)) if integral else rng.uniform(0.0, 10.0)

    acc, robot, edge, nbytes = {}, {}, {}, {}
    for e in exits:
        n = rng.randint(1, 12)
        acc[e] = rng.choice(acc_pool) if rng.random() < 0.3 else rng.random()
        robot[e] = [ms() for _ in range(n)]
        edge[e] = [ms() / rng.choice([1, 5, 20]) for _ in range(n)]
        nbytes[e] = [rng.choice([0, 1000, 3072, rng.randint(0, 300000)]) for _ in range(n)] + [0]
    overhead = 0.0 if integral else rng.uniform(0.0, 3.0)
    queue = rng.choice([0.0, rng.uniform(0.0, 5.0)])
    message = rng.choice([0, 0, 390, rng.randint(1, 2000)])
    burst = rng.choice([0, 0, 1600, rng.randint(1, 5000)])
    return EdgentProblem(acc, robot, edge, nbytes, overhead, queue, message_bytes=message,
                         link_burst_bytes=burst)


def all_totals(problem: EdgentProblem, bw: float) -> List[Decision]:
    """Return every configuration evaluated at ``bw``."""
    return [evaluate(problem, bw, e, s) for e in problem.exits
            for s in range(problem.branch_len(e) + 1)]


def same(a: Decision, b: Decision) -> None:
    """Assert two decisions agree on configuration, feasibility and numbers."""
    assert a.config == b.config, (a, b)
    assert a.feasible == b.feasible, (a, b)
    for f in ('device_ms', 'transfer_ms', 'edge_ms', 'total_ms'):
        x, y = getattr(a, f), getattr(b, f)
        assert x == y or x == pytest.approx(y, rel=1e-12, abs=1e-12), (f, a, b)
    assert a.accuracy == b.accuracy


def test_decide_equals_brute_force_on_random_problems():
    rng = random.Random(20180817)
    checked = 0
    for _ in range(300):
        p = random_problem(rng)
        lats = [d.total_ms for d in all_totals(p, 1e6) if math.isfinite(d.total_ms)]
        bws = [0.0, LINK_DOWN_BPS / 10, INF, 10 ** rng.uniform(3, 10), 10 ** rng.uniform(3, 10)]
        lats.sort()
        deadlines = [rng.uniform(0.01, 1.2 * lats[-1] + 1.0), rng.choice(lats) or 1.0, INF, 1e-3,
                     rng.uniform(lats[0], lats[len(lats) // 4]) or 0.5]
        for bw in bws:
            for d in deadlines:
                got = decide(p, bw, d)
                same(got, brute_force(p, bw, d))
                same(got, decide_policy(p, 'edgent', bw, d))
                same(got, dataclasses.replace(
                    evaluate(p, bw, *got.config, d), reason=got.reason))
                for policy in POLICIES[1:]:
                    same(decide_policy(p, policy, bw, d), brute_force(p, bw, d, policy))
                checked += 1
    assert checked >= 200 * 4


def test_decision_fields_and_reason():
    p = small_problem()
    d = decide(p, 10e6, 7.0)
    # exit 2 edge-only: 3072 B at 10 Mbit/s = 2.4576 ms + 1 ms overhead + 0.6 ms edge
    assert d.config == (2, 0)
    assert d.device_ms == 0.0
    assert d.transfer_ms == pytest.approx(3.4576)
    assert d.edge_ms == pytest.approx(0.6)
    assert d.total_ms == pytest.approx(4.0576)
    assert (d.accuracy, d.bandwidth_bps, d.deadline_ms, d.feasible) == (0.8, 10e6, 7.0, True)
    assert 'exit 2 split 0' in d.reason and '7.000' in d.reason
    as_dict = d.to_dict()
    assert set(as_dict) == {f.name for f in dataclasses.fields(Decision)}
    assert as_dict['split_index'] == 0


def test_zero_bandwidth_gives_device_only(alexnet):
    for bw in (0.0, LINK_DOWN_BPS / 2):
        for deadline in (1.0, 5.0, 20.0, 100.0, INF):
            d = decide(alexnet, bw, deadline)
            assert d.split_index == alexnet.branch_len(d.exit_index)
            assert d.transfer_ms == 0.0 and d.edge_ms == 0.0
    d = decide(alexnet, 0.0, INF)
    assert d.exit_index == 5 and d.feasible


def test_huge_bandwidth_picks_most_accurate_exit_when_edge_meets_deadline(alexnet):
    edge_only = evaluate(alexnet, INF, 5, 0).total_ms
    for bw in (INF, 1e12):
        for deadline in (edge_only * 1.001, edge_only * 2, 1000.0):
            d = decide(alexnet, bw, deadline)
            assert d.exit_index == 5 and d.feasible
            assert d.total_ms <= deadline
    # deadline below even the edge-only time of exit 5: a less accurate exit
    d = decide(alexnet, INF, edge_only * 0.5)
    assert d.exit_index < 5 or not d.feasible


def test_deadline_below_every_configuration_is_infeasible_fastest(alexnet):
    for bw in (0.0, 1e6, 20e6, INF):
        fastest = min(all_totals(alexnet, bw), key=lambda x: x.total_ms)
        d = decide(alexnet, bw, fastest.total_ms * 0.5)
        assert not d.feasible
        assert d.total_ms == pytest.approx(fastest.total_ms)
        assert 'no configuration meets deadline' in d.reason
        assert f'{d.total_ms:.3f} ms' in d.reason and f'exit {d.exit_index}' in d.reason


def test_deadline_boundary_is_inclusive():
    p = small_problem()
    d = decide(p, 10e6, 4.0576)
    assert d.config == (2, 0) and d.feasible


def test_more_accurate_exit_wins_over_faster_one():
    p = small_problem()
    assert decide(p, 0.0, 5.9).config == (1, 2)
    assert decide(p, 0.0, 6.0).config == (2, 3)


def test_tie_prefers_device_only_then_fewer_bytes_then_larger_split():
    # exit 1: all three splits take 2 ms at infinite bandwidth with no overhead
    p = EdgentProblem({1: 0.9}, {1: [1.0, 1.0]}, {1: [1.0, 1.0]}, {1: [10, 10, 0]}, 0.0)
    assert decide(p, INF, 10.0).config == (1, 2)            # device-only wins the tie
    p = EdgentProblem({1: 0.9}, {1: [1.0, 1.0]}, {1: [1.0, 1.0]}, {1: [10, 10, 0]}, 0.0,
                      edge_queue_ms=0.0)
    q = dataclasses.replace(p, robot_ms={1: [1.0, 5.0]})   # device-only now 6 ms
    assert decide(q, INF, 10.0).config == (1, 1)            # equal bytes: larger split
    r = dataclasses.replace(q, split_bytes={1: [5, 10, 0]})
    assert decide(r, INF, 10.0).config == (1, 0)            # fewer bytes wins
    # equal accuracy on two exits: the faster one
    s = EdgentProblem({1: 0.5, 2: 0.5}, {1: [3.0], 2: [2.0]}, {1: [1.0], 2: [1.0]},
                      {1: [100, 0], 2: [100, 0]}, 5.0)
    assert decide(s, 0.0, 10.0).config == (2, 1)


def test_decide_policy_baselines():
    p = small_problem()
    bw = 10e6   # edge-only of exit 2: 4.0576 ms; device-only: exit 1 3 ms, exit 2 6 ms
    d = decide_policy(p, 'device-only', bw, 5.0)
    assert d.config == (1, 2) and d.feasible
    d = decide_policy(p, 'device-only', bw, 6.0)
    assert d.config == (2, 3) and d.feasible
    d = decide_policy(p, 'device-only', INF, 1.0)
    assert d.config == (1, 2) and not d.feasible            # fastest device-only
    for deadline in (1.0, 100.0):
        d = decide_policy(p, 'edge-only', bw, deadline)
        assert d.config == (2, 0) and d.feasible == (deadline >= 4.0576)
    d = decide_policy(p, 'edge-only', 0.0, 100.0)
    assert d.config == (2, 0) and not d.feasible and d.total_ms == INF
    d = decide_policy(p, 'partition-only', 1e6, 1000.0)     # slow link: device-only is best
    assert d.config == (2, 3)
    d = decide_policy(p, 'partition-only', bw, 1000.0)
    assert d.exit_index == 2 and d.total_ms == min(
        evaluate(p, bw, 2, s).total_ms for s in range(4))
    d = decide_policy(p, 'exit-only', bw, 4.5)
    assert d.config == (2, 0)
    d = decide_policy(p, 'exit-only', 1e6, 4.5)
    assert d.config == (1, 2)
    # partitioning beats every baseline: split 1 of exit 2 at 1 Mbit/s (2.3 ms)
    q = small_problem(split_bytes={1: [3072, 1000, 0], 2: [300000, 100, 200000, 0]},
                      overhead_ms=0.0)
    d = decide(q, 1e6, 2.5)
    assert d.config == (2, 1) and d.feasible
    for policy in ('device-only', 'edge-only', 'exit-only'):
        other = decide_policy(q, policy, 1e6, 2.5)
        assert not other.feasible or other.accuracy < d.accuracy


def test_policy_validation():
    p = small_problem()
    with pytest.raises(ValueError, match='unknown policy'):
        decide_policy(p, 'neurosurgeon', 1e6, 10.0)


@pytest.mark.parametrize('bw', [-1.0, math.nan, '1e6', None, True])
def test_bad_bandwidth_raises(bw):
    with pytest.raises(ValueError, match='bandwidth_bps'):
        decide(small_problem(), bw, 10.0)


@pytest.mark.parametrize('deadline', [0.0, -5.0, math.nan, None, -INF])
def test_bad_deadline_raises(deadline):
    with pytest.raises(ValueError, match='deadline_ms'):
        decide(small_problem(), 1e6, deadline)


@pytest.mark.parametrize('kw, match', [
    (dict(accuracy={}), 'accuracy'),
    (dict(accuracy={1: 0.5, 2: 1.5}), r'accuracy\[2\]'),
    (dict(accuracy={0: 0.5, 2: 0.8}), 'exit keys'),
    (dict(accuracy={1: 0.5, 3: 0.8}), 'robot_ms has exits'),
    (dict(robot_ms={1: [1.0, 2.0]}), 'robot_ms has exits'),
    (dict(robot_ms={1: [1.0, -2.0], 2: [1.0, 2.0, 3.0]}), r'robot_ms\[1\]\[1\]'),
    (dict(robot_ms={1: [1.0, INF], 2: [1.0, 2.0, 3.0]}), r'robot_ms\[1\]\[1\]'),
    (dict(robot_ms={1: [], 2: [1.0, 2.0, 3.0]}), r'robot_ms\[1\]'),
    (dict(edge_ms={1: [0.1], 2: [0.1, 0.2, 0.3]}), r'edge_ms\[1\] has 1 layers'),
    (dict(edge_ms={1: [0.1, math.nan], 2: [0.1, 0.2, 0.3]}), r'edge_ms\[1\]\[1\]'),
    (dict(split_bytes={1: [3072, 0], 2: [3072, 5000, 2000, 0]}), r'split_bytes\[1\]'),
    (dict(split_bytes={1: [3072, 1000, 5], 2: [3072, 5000, 2000, 0]}), r'device-only'),
    (dict(split_bytes={1: [3072, -1, 0], 2: [3072, 5000, 2000, 0]}), r'split_bytes\[1\]\[1\]'),
    (dict(split_bytes={1: [3072, 1.5, 0], 2: [3072, 5000, 2000, 0]}), 'whole number'),
    (dict(split_bytes=[1, 2]), 'split_bytes must be a dict'),
    (dict(overhead_ms=-1.0), 'overhead_ms'),
    (dict(overhead_ms=INF), 'overhead_ms'),
    (dict(edge_queue_ms=math.nan), 'edge_queue_ms'),
    (dict(message_bytes=-1), 'message_bytes'),
    (dict(message_bytes=1.5), 'message_bytes'),
    (dict(link_burst_bytes=-1), 'link_burst_bytes'),
    (dict(link_burst_bytes=0.5), 'link_burst_bytes'),
])
def test_problem_validation(kw, match):
    with pytest.raises(ValueError, match=match):
        small_problem(**kw)


def test_problem_is_frozen_copied_and_replace_revalidates():
    robot = {1: [1.0, 2.0], 2: [1.0, 2.0, 3.0]}
    p = small_problem(robot_ms=robot)
    robot[1][0] = 100.0                              # the caller's dict is not shared
    assert decide(p, 0.0, 3.5).config == (1, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.overhead_ms = 2.0
    q = dataclasses.replace(p, edge_queue_ms=10.0)
    assert evaluate(q, INF, 2, 0).edge_ms == pytest.approx(10.6)
    with pytest.raises(ValueError, match='edge_queue_ms'):
        dataclasses.replace(p, edge_queue_ms=-1.0)


def test_evaluate_and_its_validation():
    p = small_problem()
    d = evaluate(p, 0.0, 2, 1)
    assert d.transfer_ms == INF and not d.feasible
    d = evaluate(p, 0.0, 2, 3, deadline_ms=6.0)
    assert d.total_ms == 6.0 and d.feasible and d.transfer_ms == 0.0
    d = evaluate(p, 8e6, 2, 1)                       # 5000 B at 8 Mbit/s = 5 ms, + 1 ms
    assert d.device_ms == 1.0 and d.transfer_ms == pytest.approx(6.0)
    assert d.edge_ms == pytest.approx(0.5) and d.feasible and d.deadline_ms == INF
    for e, s in ((3, 0), (1, 3), (1, -1), (True, 0), (1, 1.0)):
        with pytest.raises(ValueError, match='exit_index|split_index'):
            evaluate(p, 1e6, e, s)


def test_message_bytes_count_on_the_link_and_can_change_the_decision():
    # 5000 B + 390 B of headers and fields (one 1,480-byte IP fragment more per 1,480 B: 3 more
    # fragments, 34 B each) at 8 Mbit/s, + 1 ms of per-message software overhead
    p = small_problem(message_bytes=390)
    d = evaluate(p, 8e6, 2, 1)
    assert d.transfer_ms == pytest.approx((5000 + 390 + 3 * 34) * 8 / 8e6 * 1e3 + 1.0)
    assert evaluate(p, 8e6, 2, 3).transfer_ms == 0.0        # device-only sends nothing
    # a 64-byte payload is 454 B on the wire: 7x its bytes at 50 kbit/s
    kw = dict(robot_ms={1: [1.0, 2.0], 2: [1.0, 2.0, 30.0]},
              split_bytes={1: [3072, 1000, 0], 2: [3072, 5000, 64, 0]}, overhead_ms=0.0)
    q = small_problem(message_bytes=390, **kw)
    assert evaluate(q, 50e3, 2, 2).transfer_ms == pytest.approx(454 * 8 / 50e3 * 1e3)
    # the paper's payload-only model sends exit 2's 64 B cut within 15 ms at 50 kbit/s
    # (3 + 10.2 + 0.3 ms); on the wire it takes 72.6 ms: exit 1 on the robot instead
    assert decide(small_problem(**kw), 50e3, 15.0).config == (2, 2)
    assert decide(q, 50e3, 15.0).config == (1, 2)


def test_a_message_that_fits_in_the_shapers_burst_crosses_at_once():
    # 64 B + 390 B = 454 B on the wire: 72.6 ms at 50 kbit/s, all of it within a 1,600 B burst
    kw = dict(robot_ms={1: [1.0, 2.0], 2: [1.0, 2.0, 30.0]},
              split_bytes={1: [3072, 1000, 0], 2: [3072, 5000, 64, 0]}, overhead_ms=1.0,
              message_bytes=390)
    q = small_problem(link_burst_bytes=1600, **kw)
    assert evaluate(q, 50e3, 2, 2).transfer_ms == pytest.approx(1.0)      # the overhead only
    wire = 5000 + 390 + 3 * 34          # larger than the burst: planned at its full size
    assert evaluate(q, 50e3, 2, 1).transfer_ms == pytest.approx(wire * 8 / 50e3 * 1e3 + 1.0)
    assert evaluate(q, 50e3, 2, 3).transfer_ms == 0.0           # device-only sends nothing
    # without the burst exit 1 stays on the robot at 15 ms; with it the 64 B cut fits
    assert decide(small_problem(**kw), 50e3, 15.0).config == (1, 2)
    assert decide(q, 50e3, 15.0).config == (2, 2)
    assert dataclasses.replace(q, edge_queue_ms=1.0).link_burst_bytes == 1600
    assert (burst_wire(0, 1600), burst_wire(1600, 1600), burst_wire(1601, 1600)) == (0, 0, 1601)


def test_from_model_uses_latency_models_and_payloads():
    from edgent_ros.core.arch import branch_specs, NUM_EXITS, split_payload_bytes
    from edgent_ros.offline.training import SHIPPED_CONFIG
    lat = FlopsLatency()
    p = EdgentProblem.from_model(SHIPPED_CONFIG, ACC5, lat, overhead_ms=2.0, bytes_per_element=2)
    assert sorted(set(lat.calls)) == sorted((h, e) for h in ('edge', 'robot')
                                            for e in range(1, NUM_EXITS + 1))
    for e in range(1, NUM_EXITS + 1):
        n = len(branch_specs(SHIPPED_CONFIG, e))
        assert len(p.robot_ms[e]) == len(p.edge_ms[e]) == n
        assert p.split_bytes[e] == [split_payload_bytes(SHIPPED_CONFIG, e, s, 2)
                                    for s in range(n + 1)]
    assert p.overhead_ms == 2.0 and p.split_bytes[5][0] == 3072
    assert p.message_bytes == 390                   # a Tensor over Fast DDS, by default
    assert EdgentProblem.from_model(SHIPPED_CONFIG, ACC5, lat, message_bytes=0).message_bytes == 0


def test_relative_change():
    assert relative_change(1.0, 1.0) == 0.0
    assert relative_change(0.9, 1.1) == pytest.approx(0.2 / 1.1)
    assert relative_change(1.1, 0.9) == relative_change(0.9, 1.1)
    assert relative_change(INF, 1e6) == 1.0 and relative_change(0.0, 1e6) == 1.0


def boundary_bandwidth(problem: EdgentProblem, deadline: float) -> float:
    """Return a bandwidth where the Edgent decision changes (geometric bisection)."""
    lo, hi = 1e5, 1e9
    assert decide(problem, lo, deadline).config != decide(problem, hi, deadline).config
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        if decide(problem, mid, deadline).config == decide(problem, lo, deadline).config:
            lo = mid
        else:
            hi = mid
    return hi


def test_hysteresis_does_not_flap_under_jitter(alexnet):
    deadline = 8.0
    b0 = boundary_bandwidth(alexnet, deadline)
    rng = random.Random(7)
    h = Hysteresis(rel_change=0.2, big_drop=0.5, min_dwell_s=2.0)
    raw_changes, switches, prev = 0, 0, None
    for k in range(400):
        bw = b0 * (1.0 + rng.uniform(-0.1, 0.1))
        raw = decide(alexnet, bw, deadline).config
        raw_changes += prev is not None and raw != prev
        prev = raw
        step = h.update(0.25 * k, alexnet, bw, deadline)
        switches += step.switched and k > 0
        assert step.decision.bandwidth_bps == bw
        # what is applied never misses the deadline when something could meet it
        assert step.decision.feasible or not decide(alexnet, bw, deadline).feasible
    assert raw_changes > 20              # the raw decision would flap...
    assert switches <= 1                 # ...the hysteresis does not


@pytest.mark.parametrize('deadline', [8.0, 1000.0])
def test_hysteresis_switches_at_once_on_big_drop(alexnet, deadline):
    bw0 = 1.5 * boundary_bandwidth(alexnet, deadline)
    h = Hysteresis(min_dwell_s=5.0)
    assert h.update(0.0, alexnet, bw0, deadline).switched          # initial choice
    assert not h.update(0.5, alexnet, bw0 * 1.05, deadline).switched
    low = bw0 * 0.4                                                 # a 60 % drop, within dwell
    old = h.current.config
    assert decide(alexnet, low, deadline).config != old
    step = h.update(1.0, alexnet, low, deadline)
    cur = evaluate(alexnet, low, *old, deadline)
    if cur.feasible and cur.accuracy >= decide(alexnet, low, deadline).accuracy:
        # still on time and as accurate: an equally accurate configuration is no reason to move
        assert not step.switched and step.decision.config == old
        assert 'not more accurate' in step.why
    else:
        assert step.switched and step.decision.config == decide(alexnet, low, deadline).config


def test_hysteresis_does_not_flip_between_equally_accurate_configurations(alexnet):
    # robot and edge-only paths of the same exit, both far within a loose deadline: the
    # estimate swinging 10x (loopback under CPU load) must not flip the decision between them
    h = Hysteresis(min_dwell_s=0.0)
    bws = [16e6, 0.5e6, 20e6, 0.3e6, 12e6, 0.4e6] * 5
    switches = sum(h.update(float(i), alexnet, bw, 1000.0).switched for i, bw in enumerate(bws))
    assert switches == 1                 # the initial choice only
    assert h.current.exit_index == max(alexnet.accuracy)


def test_hysteresis_rules():
    p = small_problem()
    h = Hysteresis(rel_change=0.2, big_drop=0.5, min_dwell_s=1.0)
    assert h.current is None
    assert h.update(0.0, p, 1e6, 5.0).decision.config == (1, 2)    # exit 2 needs 6 ms
    # exit 2 edge-only at 8 Mbit/s: 3.072 + 1 + 0.6 = 4.672 ms <= 5 ms, more accurate
    step = h.update(0.2, p, 8e6, 5.0)
    assert not step.switched and 'dwell' in step.why                # bandwidth rose, dwell
    assert step.decision.config == (1, 2) and step.decision.bandwidth_bps == 8e6
    step = h.update(2.0, p, 8e6, 5.0)
    assert step.switched and step.decision.config == (2, 0) and 'moved' in step.why
    # current (edge-only) now misses the deadline: switch within dwell
    step = h.update(2.1, p, 5e6, 5.0)                               # 4.9152 + 1.6 = 6.52 ms
    assert step.switched and step.decision.config == (1, 2) and 'deadline' in step.why
    step = h.update(2.2, p, 5e6, 5.0)
    assert not step.switched and 'current' in step.why
    # a deadline change is a command: applied at once, within dwell (exit 2 on the robot, 6 ms)
    step = h.update(2.3, p, 1e6, 6.5)
    assert step.switched and step.decision.config == (2, 3) and 'deadline' in step.why
    # exit 2 edge-only is faster at 8 Mbit/s (4.672 ms), but device-only is as accurate and on
    # time: no switch, however long
    step = h.update(9.0, p, 8e6, 6.5)
    assert decide(p, 8e6, 6.5).config == (2, 0)
    assert not step.switched and step.decision.config == (2, 3) and 'not more' in step.why
    with pytest.raises(ValueError, match='now_s'):
        h.update(1.0, p, 5e6, 6.5)
    h.reset()
    assert h.current is None
    assert h.update(1.0, p, 5e6, 6.5).switched


def test_hysteresis_switches_to_more_accurate_only_with_margin():
    # overhead 0, deadline 4 ms: exit 2 edge-only takes 24.576e6 / bw + 0.6 ms, so it meets the
    # deadline from 7.23 Mbit/s and still would after a 20 % drop from 9.04 Mbit/s
    busy = small_problem(overhead_ms=0.0, edge_queue_ms=5.0)
    idle = dataclasses.replace(busy, edge_queue_ms=0.0)
    h = Hysteresis(rel_change=0.2, min_dwell_s=0.0)
    assert h.update(0.0, busy, 7.5e6, 4.0).decision.config == (1, 2)   # edge busy: exit 1
    step = h.update(1.0, idle, 7.5e6, 4.0)      # exit 2 fits (3.88 ms), not at 6 Mbit/s
    assert decide(idle, 7.5e6, 4.0).config == (2, 0)
    assert not step.switched and step.decision.config == (1, 2)
    h = Hysteresis(rel_change=0.2, min_dwell_s=0.0)
    assert h.update(0.0, busy, 10e6, 4.0).decision.config == (1, 2)
    step = h.update(1.0, idle, 10e6, 4.0)       # 3.06 ms; at 8 Mbit/s 3.67 ms: margin
    assert step.switched and step.decision.config == (2, 0) and 'more accurate' in step.why


@pytest.mark.parametrize('kw', [dict(rel_change=0.0), dict(rel_change=1.0),
                                dict(big_drop=1.5), dict(min_dwell_s=-1.0),
                                dict(policy='fastest')])
def test_hysteresis_validation(kw):
    with pytest.raises(ValueError):
        Hysteresis(**kw)


def test_scale_robot_slows_only_the_robot(alexnet):
    slow = scale_robot(alexnet, 10.0)
    assert scale_robot(alexnet, 1.0) is alexnet
    for e in alexnet.exits:
        assert slow.robot_ms[e] == pytest.approx([10 * x for x in alexnet.robot_ms[e]])
        assert slow.edge_ms[e] == alexnet.edge_ms[e]
        assert slow.split_bytes[e] == alexnet.split_bytes[e]
    n = alexnet.branch_len(5)
    fast, tenfold = evaluate(alexnet, 1e6, 5, n), evaluate(slow, 1e6, 5, n)
    assert tenfold.device_ms == pytest.approx(10 * fast.device_ms)
    # a slower robot can only push the choice towards the edge at a generous link
    d = decide(slow, 1e9, fast.total_ms * 2)
    assert d.device_ms <= decide(alexnet, 1e9, fast.total_ms * 2).device_ms * 10
    for bad in (0, -1.0, float('nan'), float('inf'), 'x'):
        with pytest.raises(ValueError):
            scale_robot(alexnet, bad)
    assert PLANNER_POLICIES == POLICIES + ('true-bandwidth', 'fixed')


# ------------------------------------------------------------------ encodings (third dimension)

def with_variants(p: EdgentProblem, rng: random.Random) -> EdgentProblem:
    """Give ``p`` random encoded variants of most offloading cuts."""
    from edgent_ros.core.optimizer import Variant
    variants = {}
    for e in p.exits:
        n = p.branch_len(e)
        for s in range(n):
            if rng.random() < 0.3:
                continue
            vs = []
            for name in rng.sample(['fp16', 'int8', 'int8-zlib', 'jpeg'], rng.randint(1, 3)):
                acc = p.accuracy[e] - rng.choice([0.0, 0.0, 0.001, 0.05])
                vs.append(Variant(name, max(0.0, acc), rng.choice(
                    [p.split_bytes[e][s] // 4, p.split_bytes[e][s], rng.randint(0, 5000)]),
                    rng.choice([0.0, rng.uniform(0, 1)]), rng.choice([0.0, rng.uniform(0, 1)])))
            variants[(e, s)] = vs
    return dataclasses.replace(p, variants=variants)


def same_key(a: Decision, b: Decision) -> None:
    """Like ``same``, and the encodings agree too."""
    same(a, b)
    assert a.encoding == b.encoding, (a, b)


def test_decide_with_encodings_equals_brute_force():
    """Encoded variants: the vectorized rule equals plain enumeration for every policy."""
    rng = random.Random(9)
    checked = 0
    for _ in range(200):
        p = with_variants(random_problem(rng), rng)
        lats = sorted(d.total_ms for d in all_totals(p, 1e6) if math.isfinite(d.total_ms))
        for bw in (0.0, INF, 10 ** rng.uniform(3, 9), 10 ** rng.uniform(3, 9)):
            for d in (rng.uniform(0.01, 1.2 * lats[-1] + 1.0), rng.choice(lats) or 1.0, INF):
                got = decide(p, bw, d)
                same_key(got, brute_force(p, bw, d))
                same_key(got, dataclasses.replace(
                    evaluate(p, bw, got.exit_index, got.split_index, d, got.encoding),
                    reason=got.reason))
                for policy in POLICIES[1:]:
                    base = decide_policy(p, policy, bw, d)
                    assert base.encoding == 'raw', (policy, base)   # baselines: the paper's
                    same_key(base, brute_force(p, bw, d, policy))
                checked += 1
    assert checked >= 2000


def test_encoding_trades_bytes_for_accuracy():
    """A lossy encoding is taken only where the raw tensor misses the deadline."""
    from edgent_ros.core.optimizer import Variant
    slow = {1: [5.0, 5.0], 2: [10.0, 20.0, 30.0]}   # a robot too slow for exit 2 alone
    p = small_problem(robot_ms=slow, variants={(2, 0): [Variant('jpeg', 0.79, 1000, 0.1, 0.1)]})
    # 3072 B at 1 Mbit/s = 24.6 ms; jpeg 1000 B = 8 ms (+0.2 ms codec)
    d = decide(p, 1e6, 40.0)
    assert d.key == (2, 0, 'raw') and d.accuracy == 0.8
    d = decide(p, 1e6, 15.0)
    assert d.key == (2, 0, 'jpeg') and d.feasible and d.accuracy == 0.79
    assert d.transfer_ms == pytest.approx(8.0 + 1.0) and d.device_ms == pytest.approx(0.1)
    assert d.edge_ms == pytest.approx(0.6 + 0.1)
    assert 'jpeg' in d.reason
    # without the variant, exit 1 on the device is the best that meets 15 ms (0.5)
    assert decide(small_problem(robot_ms=slow), 1e6, 15.0).config == (1, 2)


def test_evaluate_refuses_an_encoding_the_problem_lacks():
    p = small_problem()
    with pytest.raises(ValueError, match='not a variant'):
        evaluate(p, 1e6, 2, 0, 10.0, 'int8')
    assert evaluate(p, 1e6, 2, 3, 10.0, 'int8').encoding == 'raw'   # device-only: nothing sent


@pytest.mark.parametrize('bad, match', [
    ({(2, 3): []}, 'not an offloading'),
    ({(9, 0): []}, 'not an offloading'),
    ({(2, 0): ['jpeg']}, 'Variant objects'),
])
def test_bad_variants_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        small_problem(variants=bad)


def test_variant_fields_are_validated():
    from edgent_ros.core.optimizer import Variant
    for v, match in ((Variant('raw', 0.5, 10), 'raw, repeated'),
                     (Variant('jpeg', 1.5, 10), 'top-1'),
                     (Variant('jpeg', 0.5, -1), 'nbytes'),
                     (Variant('jpeg', 0.5, 10, -1.0), 'encode_ms')):
        with pytest.raises(ValueError, match=match):
            small_problem(variants={(2, 0): [v]})


def test_hysteresis_treats_an_encoding_change_as_a_switch():
    from edgent_ros.core.optimizer import Variant
    p = small_problem(robot_ms={1: [5.0, 5.0], 2: [10.0, 20.0, 30.0]},
                      variants={(2, 0): [Variant('jpeg', 0.79, 1000)]})
    h = Hysteresis(min_dwell_s=0.0)
    assert h.update(0.0, p, 1e6, 40.0).decision.key == (2, 0, 'raw')
    step = h.update(1.0, p, 1e6, 15.0)   # deadline change: jpeg now
    assert step.switched and step.decision.key == (2, 0, 'jpeg')
    step = h.update(2.0, p, 1e6, 15.0)
    assert not step.switched and step.decision.key == (2, 0, 'jpeg')


def test_from_model_builds_variants_from_an_encoding_table(alexnet):
    """Every cut gets the encodings that fit it, with the table's numbers."""
    from types import SimpleNamespace
    from edgent_ros.core.optimizer import encoding_variants
    robot = {e: alexnet.robot_ms[e] for e in alexnet.exits}
    table = {}
    for e in alexnet.exits:
        for s in range(alexnet.branch_len(e)):
            for x in ('jpeg', 'png', 'int8', 'fp16'):
                table[(e, s, x)] = SimpleNamespace(top1=0.5, bytes_mean=123.4, encode_ms=0.1,
                                                   decode_ms=0.2)
    v = encoding_variants(robot, ['raw', 'jpeg', 'int8'], table)
    assert [x.encoding for x in v[(5, 0)]] == ['jpeg']
    assert [x.encoding for x in v[(5, 3)]] == ['int8']
    assert (5, alexnet.branch_len(5)) not in v
    assert encoding_variants(robot, ['raw'], None) is None
    with pytest.raises(ValueError, match='need the measured'):
        encoding_variants(robot, ['int8'], None)
    with pytest.raises(ValueError, match='unknown encoding'):
        encoding_variants(robot, ['bogus'], table)
    del table[(3, 2, 'int8')]
    with pytest.raises(ValueError, match='exit 3 split 2 int8'):
        encoding_variants(robot, ['int8'], table)


def test_a_lossy_variant_is_never_credited_above_its_exit():
    """Measured +0.02 points for int8 is noise: capped at the exit's top-1, raw wins on speed."""
    from types import SimpleNamespace
    from edgent_ros.core.optimizer import encoding_variants
    robot = {1: [1.0, 1.0]}
    table = {(1, 1, 'int8'): SimpleNamespace(top1=0.91, bytes_mean=10, encode_ms=0.0,
                                             decode_ms=0.0)}
    v = encoding_variants(robot, ['int8'], table, accuracy={1: 0.9})
    assert v[(1, 1)][0].accuracy == 0.9
    assert encoding_variants(robot, ['int8'], table)[(1, 1)][0].accuracy == 0.91
