"""The robot's times from its live prefixes: a described model's blocks, the AlexNet's branches."""

import json
from pathlib import Path
import shutil

import pytest

from edgent_ros.core.arch import EXIT_ATTACH, layer_table
from edgent_ros.core.artifacts import ARTIFACT_DIR, ArtifactError, read_config
from edgent_ros.core.model_desc import resolve
from edgent_ros.core.latency import LatencyModels
from edgent_ros.core.model_plan import (branch_ms, fit_prefixes, load_block_latency,
                                        load_model_accuracy, load_model_encodings, load_table,
                                        measured_robot_blocks, problem_for)
from edgent_ros.core.optimizer import EdgentProblem, evaluate, scale_robot
from edgent_ros.evaluation.paired_session import (_calibration_files, calibrate_robot,
                                                  calibration_attempt, calibration_plan,
                                                  calibration_rounds, encoder_configs,
                                                  prefix_configs, round_spread)
from edgent_ros.evaluation.sweep_session import planner_problem


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


# -- the AlexNet: its regressions with the robot's branches measured -------------------------

@pytest.fixture(scope='module')
def alexnet():
    cfg = read_config()
    return cfg, LatencyModels.load(model_id=cfg.model_id())


def _alexnet_live(cfg, models, f):
    """Return what calibrate-robot measures of the AlexNet: every exit device-only, prefixes."""
    acc = {e: 0.5 for e in range(1, 6)}
    problem = EdgentProblem.from_model(cfg, acc, models)
    configs = prefix_configs(problem, True) + [(e, problem.branch_len(e)) for e in problem.exits]
    return {(e, s): f(e, s, problem.robot_ms[e][:s]) for e, s in configs}, acc


def test_prefix_configs_cover_every_alexnet_split(alexnet):
    cfg, models = alexnet
    problem = EdgentProblem.from_model(cfg, {e: 0.5 for e in range(1, 6)}, models)
    got = set(prefix_configs(problem, True)) | {(e, problem.branch_len(e)) for e in problem.exits}
    shared = {(e, s) for e, a in EXIT_ATTACH.items() for s in range(1, a + 1)}
    every = {(e, s) for e in problem.exits for s in range(1, problem.branch_len(e) + 1)}
    assert got == every - shared             # a side exit's trunk prefixes are the last exit's
    assert set(prefix_configs(problem, False)) == {(5, s) for s in range(1, 20)}


def test_alexnet_planned_as_measured_at_every_split(alexnet):
    """Conv layers 1.7x slower than their regression, the rest 0.8x, plus 0.4 ms per frame."""
    cfg, models = alexnet
    kinds = {e: [r.spec.kind for r in layer_table(cfg, e)] for e in range(1, 6)}

    def live(e, s, layers):
        return sum(ms * (1.7 if kinds[e][i] == 'conv' else 0.8)
                   for i, ms in enumerate(layers)) + 0.4

    measured, acc = _alexnet_live(cfg, models, live)
    fitted = models.with_measured_robot(cfg, measured, scale=30.0)
    problem = scale_robot(EdgentProblem.from_model(cfg, acc, fitted), 30.0)
    for e in problem.exits:
        for s in range(1, problem.branch_len(e) + 1):
            want = live(e, s, EdgentProblem.from_model(cfg, acc, models).robot_ms[e][:s])
            assert evaluate(problem, 1e9, e, s).device_ms == pytest.approx(want, rel=1e-6), \
                (e, s)
    plain = EdgentProblem.from_model(cfg, acc, models)
    assert EdgentProblem.from_model(cfg, acc, fitted).edge_ms == plain.edge_ms   # edge as is
    assert models.branches == {}                                                # input as is


def test_alexnet_measured_branches_round_trip(alexnet, tmp_path):
    cfg, models = alexnet
    measured, acc = _alexnet_live(cfg, models, lambda e, s, layers: 2.0 * sum(layers))
    fitted = models.with_measured_robot(cfg, measured, scale=2.0)
    fitted.save(tmp_path / 'robot_latency.json', cfg.model_id())
    back = LatencyModels.load(tmp_path / 'robot_latency.json', model_id=cfg.model_id())
    assert back.branches == fitted.branches and set(back.branches) == {'robot'}
    assert back.host_info['robot']['measured']['scale'] == 2.0
    for e in range(1, 6):     # twice as slow, planned at scale 2: the regressions' own times
        assert back.branch_layer_ms('robot', cfg, e) == pytest.approx(
            models.branch_layer_ms('robot', cfg, e))


def test_alexnet_measured_branch_refusals(alexnet, tmp_path):
    cfg, models = alexnet
    with pytest.raises(ValueError, match='scale'):
        models.with_measured_robot(cfg, {(5, 3): 1.0}, scale=0.0)
    with pytest.raises(ValueError, match='robot branch 1'):   # exit 1's head never measured
        models.with_measured_robot(cfg, {(5, 20): 1.0}, scale=1.0)
    body = models.to_json()
    body['hosts']['robot']['branches_ms'] = {'1': [1.0, 2.0]}     # 2 times for 10 layers
    short = LatencyModels.from_json(body)
    with pytest.raises(ArtifactError, match='2 measured layer times for 10 layers'):
        short.branch_layer_ms('robot', cfg, 1)
    for bad in ({'9': [1.0]}, {'1': [-1.0]}, {'1': 'fast'}, [1.0], {'x': [1.0]}):
        body['hosts']['robot']['branches_ms'] = bad
        with pytest.raises(ArtifactError, match='branches_ms'):
            LatencyModels.from_json(body, source='f.json')


def test_sweep_plans_the_alexnet_robot_latency_file(alexnet, tmp_path):
    cfg, models = alexnet
    measured, acc = _alexnet_live(cfg, models, lambda e, s, layers: 1.5 * sum(layers) + 1.0)
    fitted = models.with_measured_robot(cfg, measured, scale=60.0)
    fitted.save(tmp_path / 'rl.json', cfg.model_id())
    _, problem = planner_problem(60.0, latency=tmp_path / 'rl.json')
    for (e, s), ms in measured.items():
        assert evaluate(problem, 1e9, e, s).device_ms == pytest.approx(ms, rel=1e-6)


def test_calibration_rounds_interleave_every_configuration():
    plan = [((1, 10), 75), ((5, 1), 15), ((5, 2), 4)]
    got = calibration_rounds(plan, 3)
    assert got == [((1, 10), 25), ((5, 1), 5), ((5, 2), 2),
                   ((5, 2), 1), ((5, 1), 5), ((1, 10), 25),
                   ((1, 10), 25), ((5, 1), 5), ((5, 2), 1)]
    for c, n in plan:                        # every frame asked for, none twice
        assert sum(k for x, k in got if x == c) == n
    assert calibration_rounds(plan, 1) == plan
    assert calibration_rounds([((1, 1), 1)], 3) == [((1, 1), 1)]    # no empty cells
    with pytest.raises(ValueError, match='rounds'):
        calibration_rounds(plan, 0)


def test_prefix_medians_weighted_by_their_frames():
    # split 3 (9 frames) measured faster than split 2 (1 frame): pooled at their weighted mean
    got = fit_prefixes([1.0, 1.0, 1.0], {2: 10.0, 3: 4.0}, {2: 1.0, 3: 9.0})
    assert [sum(got[:s]) for s in (1, 2, 3)] == pytest.approx([2.3, 4.6, 4.6])
    plain = fit_prefixes([1.0, 1.0, 1.0], {2: 10.0, 3: 4.0})
    assert [sum(plain[:s]) for s in (2, 3)] == pytest.approx([7.0, 7.0])
    with pytest.raises(ValueError, match='weights'):
        fit_prefixes([1.0, 1.0], {1: 1.0}, {1: 0.0})


def test_refit_rebuilds_the_committed_alexnet_calibration(tmp_path):
    """``calibrate-robot --refit`` on the committed frames gives the committed files again."""
    src = Path(__file__).resolve().parents[2] / 'bench/results/alexnet_blocks/paired'
    names = ('robot_calibration.json', 'robot_calibration_frames.csv')
    for name in names:
        shutil.copy(src / name, tmp_path / name)
    body = calibrate_robot(tmp_path, robot_scale=60.0, refit=True)
    # the file was written before round_spread was recorded; a refit adds it, nothing else
    assert body.pop('round_spread') == pytest.approx(0.21, abs=0.005)
    assert body == json.loads((src / 'robot_calibration.json').read_text())
    assert json.loads((tmp_path / 'robot_latency.json').read_text()) == \
        json.loads((src / 'robot_latency.json').read_text())
    with pytest.raises(ValueError, match='refit it with the same'):
        calibrate_robot(tmp_path, robot_scale=10.0, refit=True)
    (tmp_path / 'robot_calibration_frames.csv').unlink()
    with pytest.raises(ValueError, match='not found'):
        calibrate_robot(tmp_path, robot_scale=60.0, refit=True)


def test_spread_blocks_is_the_spread_around_the_measured_block_times(tmp_path):
    """
    Exit 1 runs at 0.8 x the profile, every other branch at 1.2 x, each frame within 1 %.

    One factor for every exit leaves the 0.8 / 1.2 split in ``spread``; the block times fitted
    from those frames predict each configuration, so ``spread_blocks`` is the 1 % only.
    """
    acc, problem = planner_problem(60.0)
    configs = prefix_configs(problem, True) + [(e, problem.branch_len(e)) for e in problem.exits]
    rows = []
    for e, s in configs:
        ms = evaluate(problem, 1e9, e, s).device_ms * (0.8 if e == 1 else 1.2)
        for k in range(10):
            d = ms * (1.0 + (0.01 if k % 2 else -0.01))
            rows.append({'exit': e, 'split': s, 'encoding': 'raw', 'device_ms': d,
                         'e2e_ms': d + 1.0})
    body = _calibration_files(tmp_path, rows, problem, acc, None, 60.0, 0)
    assert body['spread'][0] < 0.7                 # exit 1 against the others' median
    assert body['spread_blocks'][0] == pytest.approx(0.99, abs=0.005)
    assert body['spread_blocks'][-1] == pytest.approx(1.01, abs=0.005)
    assert body['robot_pacing'] == 'add' and body['robot_period_us'] == 100000
    assert 'warmup_frames' not in body
    # a warm-up's frames (kind warmup) are recorded but never fitted, however slow
    slow = [dict(r, kind='warmup', device_ms=r['device_ms'] * 3) for r in rows]
    again = _calibration_files(tmp_path, slow + [dict(r, kind='calibration') for r in rows],
                               problem, acc, None, 60.0, 0, warmup_frames=10)
    assert {k: v for k, v in again.items() if k != 'warmup_frames'} == body
    assert again['warmup_frames'] == 10
    with pytest.raises(ValueError, match='warmup frames'):
        calibrate_robot(tmp_path, robot_scale=60.0, warmup_frames=-1)


def _device_only_rounds(problem, slow=None, rep=1, frames=6):
    """Device-only rows of every exit in 3 rounds of ``frames`` / 3; ``slow``: (exit, round, x)."""
    rows = []
    for rnd in range(3):
        for e in problem.exits:
            ms = evaluate(problem, 1e9, e, problem.branch_len(e)).device_ms
            if slow and slow[:2] == (e, rnd):
                ms *= slow[2]
            for k in range(frames // 3):
                d = ms * (1.0 + (0.01 if k % 2 else -0.01))
                rows.append({'kind': 'calibration', 'rep': rep, 'exit': e,
                             'split': problem.branch_len(e), 'encoding': 'raw',
                             'device_ms': d, 'e2e_ms': d + 1.0})
    return rows


def test_round_spread_is_how_far_apart_the_rounds_measured_an_exit():
    _, problem = planner_problem(60.0)
    steady = _device_only_rounds(problem)
    assert round_spread(steady, problem.branch_len) == pytest.approx(0.0, abs=1e-9)
    # exit 3's second round 30 % slower (a host that slowed for a minute)
    assert round_spread(_device_only_rounds(problem, (3, 1, 1.3)), problem.branch_len) == \
        pytest.approx(0.3)
    # a dropped frame is a row of its round (no time): the rounds stay aligned
    rows = _device_only_rounds(problem, (2, 2, 1.5))
    rows[0] = dict(rows[0], e2e_ms=None, device_ms=None)
    assert round_spread(rows, problem.branch_len) == pytest.approx(0.5)
    # prefixes are not rounds of an exit
    rows = steady + [{'exit': 5, 'split': 3, 'device_ms': 999.0, 'e2e_ms': 1000.0}]
    assert round_spread(rows, problem.branch_len) == pytest.approx(0.0, abs=1e-9)


def test_only_the_last_calibration_attempt_is_fitted(tmp_path):
    acc, problem = planner_problem(60.0)
    first = _device_only_rounds(problem, (1, 0, 1.5), rep=1)
    last = _device_only_rounds(problem, rep=2)
    assert calibration_attempt(first + last) == 2
    assert calibration_attempt([dict(r, rep=0) for r in last]) == 0   # files before attempts
    assert calibration_attempt([dict(r, rep=None) for r in last]) == 0
    alone = _calibration_files(tmp_path, last, problem, acc, None, 60.0, 0)
    assert alone['round_spread'] == pytest.approx(0.0, abs=1e-4)
    assert 'steady' not in alone and 'attempts' not in alone
    both = _calibration_files(tmp_path, first + last, problem, acc, None, 60.0, 0,
                              steady_within=0.1)
    assert (both['steady'], both['attempts'], both['steady_within']) == (True, 2, 0.1)
    assert {k: v for k, v in both.items()
            if k not in ('steady', 'attempts', 'steady_within')} == alone
    # one attempt, unsteady: written, and marked so
    one = _calibration_files(tmp_path, first, problem, acc, None, 60.0, 0, steady_within=0.1)
    assert (one['steady'], one['attempts']) == (False, 1)
    assert one['round_spread'] == pytest.approx(0.5, abs=1e-3)
    for bad in (0.0, 1.5, '10', True):
        with pytest.raises(ValueError, match='steady_within must be a fraction'):
            calibrate_robot(tmp_path, robot_scale=60.0, steady_within=bad)
    for bad in (0, -1, 1.0, True):
        with pytest.raises(ValueError, match='attempts must be an integer'):
            calibrate_robot(tmp_path, robot_scale=60.0, attempts=bad)


# -- learned bottleneck encoders, measured through the emulation -------------------------------

def test_encoders_measured_on_the_robot_replace_the_tables(resnet):
    """The table's encode_ms is host time; the robot's own encoder time is what gets planned."""
    table, latency = resnet
    measured = _measured(table, latency, lambda k, v: 2 * v)
    body = measured_robot_blocks(latency, table, measured, scale=4.0,
                                 encoders={(5, 'bn8'): 8.0, (9, 'bn4'): -1.0})
    assert body['hosts']['robot']['encode_ms'] == {'5/bn8': 2.0, '9/bn4': 0.0}   # ms / scale
    acc = load_model_accuracy(ARTIFACT_DIR / 'resnet64.accuracy.json', table['model_id'])
    enc = load_model_encodings(ARTIFACT_DIR / 'resnet64.accuracy.json', table['model_id'])
    plan = problem_for(table, body, acc, robot_time_scale=4.0, encodings=['raw', 'bn8', 'bn4'],
                       encoding_table=enc)
    for e in (1, 4):     # the same encoder at every exit that leaves after its cut
        raw = evaluate(plan, 1e9, e, 5).device_ms
        assert evaluate(plan, 1e9, e, 5, encoding='bn8').device_ms == pytest.approx(raw + 8.0)
    assert evaluate(plan, 1e9, 4, 9, encoding='bn4').device_ms == \
        pytest.approx(evaluate(plan, 1e9, 4, 9).device_ms)
    # an encoder the calibration did not measure keeps the table's time (x the scale)
    raw = evaluate(plan, 1e9, 4, 7).device_ms
    assert evaluate(plan, 1e9, 4, 7, encoding='bn4').device_ms == \
        pytest.approx(raw + 4.0 * enc[(4, 7, 'bn4')].encode_ms)
    assert 'encode_ms' not in measured_robot_blocks(latency, table, measured, 4.0)['hosts'][
        'robot']


def test_calibration_measures_every_learned_encoder_on_the_last_exit(alexnet):
    _, problem, _ = calibration_plan(10.0, resolve('resnet64'), 75)
    table = load_table(ARTIFACT_DIR / 'resnet64.table.json')
    enc = load_model_encodings(ARTIFACT_DIR / 'resnet64.accuracy.json', table['model_id'])
    got = encoder_configs(problem)
    assert got == sorted({(4, s, x) for _, s, x in enc if x.startswith('bn')})
    assert (4, 5, 'bn8') in got
    assert encoder_configs(planner_problem(60.0)[1]) == []     # the AlexNet has none
    # the calibration's own problem predicts every configuration it runs, encoders included
    for model in ('resnet64', None):
        accuracy, problem, plan = calibration_plan(10.0, resolve(model) if model else None, 75)
        for c, n in plan:
            enc = c[2] if len(c) > 2 else 'raw'
            assert evaluate(problem, 1e9, c[0], c[1], encoding=enc).device_ms > 0, c
        assert any(len(c) > 2 for c, _ in plan) == (model is not None)


def test_encoder_time_is_its_cut_less_the_raw_prefix(tmp_path):
    """Calibration frames with bn8 at split 5 taking 7 ms more than raw: planned as measured."""
    encs = ['raw', 'bn4', 'bn8']
    acc, problem = planner_problem(10.0, encs, model='resnet64')
    configs = prefix_configs(problem, False) + [(e, problem.branch_len(e)) for e in problem.exits]
    rows = []
    for e, s in configs:
        ms = evaluate(problem, 1e9, e, s).device_ms
        rows += [{'exit': e, 'split': s, 'encoding': 'raw', 'device_ms': ms, 'e2e_ms': ms + 1}
                 for _ in range(5)]
    base = evaluate(problem, 1e9, 4, 5).device_ms
    rows += [{'exit': 4, 'split': 5, 'encoding': 'bn8', 'device_ms': base + 7.0,
              'e2e_ms': base + 9.0} for _ in range(5)]
    body = _calibration_files(tmp_path, rows, problem, acc, ARTIFACT_DIR / 'resnet64.model.yaml',
                              10.0, 0)
    _, planned = planner_problem(10.0 * body['factor'], encs, model='resnet64',
                                 latency=tmp_path / body['robot_latency'])
    assert evaluate(planned, 1e9, 4, 5, encoding='bn8').device_ms == pytest.approx(base + 7.0)
    assert evaluate(planned, 1e9, 4, 5).device_ms == pytest.approx(base)   # raw untouched
    assert body['spread_blocks'][0] == pytest.approx(1.0) == body['spread_blocks'][-1]
