"""core.model_plan.measured_robot_blocks: the robot's block times from its live prefixes."""

import pytest

from edgent_ros.core.artifacts import ARTIFACT_DIR
from edgent_ros.core.model_plan import (branch_ms, load_block_latency, load_table,
                                        measured_robot_blocks, problem_for)
from edgent_ros.core.optimizer import evaluate


@pytest.fixture(scope='module')
def resnet():
    table = load_table(ARTIFACT_DIR / 'resnet64.table.json')
    return table, load_block_latency(ARTIFACT_DIR / 'resnet64.latency.json', table['model_id'])


def _profiled(table, latency, scale=1.0):
    """{(exit, split): profiled prefix ms x scale} of every cut of every exit."""
    robot = branch_ms(table, latency, 'robot')
    return {(e, s): sum(row[:s]) * scale for e, row in robot.items()
            for s in range(1, len(row) + 1)}


def _measured(table, latency, f):
    """Return what calibrate-robot measures: the trunk's splits, each exit device-only."""
    prof = _profiled(table, latency)
    robot = branch_ms(table, latency, 'robot')
    full = [x['exit'] for x in table['exits'] if x['attach'] is None][0]
    keep = {(full, s) for s in range(1, len(robot[full]) + 1)} | {
        (e, len(row)) for e, row in robot.items()}
    return {k: f(k, v) for k, v in prof.items() if k in keep}


def test_a_robot_twice_as_slow_everywhere(resnet):
    table, latency = resnet
    body = measured_robot_blocks(latency, table, _measured(table, latency, lambda k, v: 2 * v),
                                 scale=4.0)
    got, want = body['hosts']['robot'], latency['hosts']['robot']
    assert got['trunk_ms'] == pytest.approx([2 * v / 4 for v in want['trunk_ms']])
    assert got['heads_ms'] == pytest.approx([2 * v / 4 for v in want['heads_ms']])
    assert body['hosts']['edge'] == latency['hosts']['edge']      # the edge untouched
    assert latency['hosts']['robot']['trunk_ms'] == want['trunk_ms']   # input not changed


def test_planner_at_the_scale_plans_what_was_measured(resnet):
    """Early blocks 1.6x slower than profiled, late ones 0.9x, plus 0.3 ms per frame."""
    table, latency = resnet
    robot = branch_ms(table, latency, 'robot')

    def live(k, v):
        e, s = k
        return sum(ms * (1.6 if i < 5 else 0.9) for i, ms in enumerate(robot[e][:s])) + 0.3

    measured = _measured(table, latency, live)
    body = measured_robot_blocks(latency, table, measured, scale=5.0)
    acc = {1: 0.5, 2: 0.6, 3: 0.7, 4: 0.8}
    problem = problem_for(table, body, acc, robot_time_scale=5.0)
    for (e, s), ms in measured.items():
        assert evaluate(problem, 1e9, e, s).device_ms == pytest.approx(ms, rel=1e-6), (e, s)


def test_noise_is_pooled_and_gaps_interpolated(resnet):
    table, latency = resnet
    prof = _profiled(table, latency)
    full = [x['exit'] for x in table['exits'] if x['attach'] is None][0]
    n = len(latency['hosts']['robot']['trunk_ms'])
    measured = {(full, s): prof[(full, s)] for s in (1, 3, 4, n)}
    measured[(full, 4)] = prof[(full, 3)] * 0.9        # faster than a shorter prefix: noise
    body = measured_robot_blocks(latency, table, measured, scale=1.0)
    trunk = body['hosts']['robot']['trunk_ms']
    assert all(v >= 0 for v in trunk)
    prefix = [sum(trunk[:s]) for s in range(n + 1)]
    pooled = (prof[(full, 3)] + prof[(full, 3)] * 0.9) / 2
    assert prefix[3] == pytest.approx(pooled) and prefix[4] == pytest.approx(pooled)
    assert prefix[1] < prefix[2] < prefix[3]      # split 2 between its measured neighbours
    assert prefix[n] == pytest.approx(prof[(full, n)])


def test_refusals(resnet):
    table, latency = resnet
    with pytest.raises(ValueError, match='no trunk split'):
        measured_robot_blocks(latency, table, {(1, 6): 10.0}, scale=1.0)
    with pytest.raises(ValueError, match='scale'):
        measured_robot_blocks(latency, table, {(4, 3): 10.0}, scale=0.0)
