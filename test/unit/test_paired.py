"""The paired evaluation's statistics and its exhaustive oracle search (evaluation.paired)."""

import argparse
import importlib.util
import itertools
import json
import math
from pathlib import Path
import random
import re
import shutil

import pytest

from edgent_ros.core.artifacts import ARTIFACT_DIR
from edgent_ros.evaluation.paired import (Candidate, cell_stats, check_claims, claim_roles,
                                          EARLY_STOP_LATE, grid_gain, mean_ci, on_time,
                                          OracleSearch, oracle_rows, paired_diff, policy_order,
                                          t95, transfer_floor_ms, wilson)
from edgent_ros.evaluation.paired_report import build, headline, same_frames
from edgent_ros.evaluation.paired_session import (calibration_factor, calibration_latency,
                                                  calibration_spread, drop_kind, META_FILE,
                                                  model_label, run_paired, spread_quantiles)
from edgent_ros.evaluation.sweep import read_rows
from edgent_ros.evaluation.testbed_session import ros_args


def _frames(lat, config):
    return [{'e2e_ms': x, 'exit': config[0], 'split': config[1]} for x in lat]


def test_intervals():
    assert wilson(0, 0) == (None, None)
    lo, hi = wilson(60, 60)
    assert hi == 1.0 and 0.93 < lo < 0.95            # 60/60 on time: 99 % is inside
    lo, hi = wilson(50, 60)
    assert hi < 0.99                                 # 50/60: clearly below 99 %
    m, h = mean_ci([0.8, 0.82, 0.84])
    assert m == pytest.approx(0.82) and h == pytest.approx(4.303 * 0.02 / math.sqrt(3))
    assert mean_ci([0.5]) == (0.5, None) and mean_ci([]) == (None, None)
    assert t95(100) == pytest.approx(1.96, abs=1e-3) and t95(11) == t95(10)
    with pytest.raises(ValueError):
        t95(0)


def test_policy_order_is_shuffled_per_cell_and_reproducible():
    pols = ['a', 'b', 'c', 'd', 'e']
    orders = {tuple(policy_order(pols, 1.0, 200.0, r, 0)) for r in range(1, 30)}
    assert len(orders) > 5 and all(sorted(o) == pols for o in orders)
    assert policy_order(pols, 1.0, 200.0, 2, 0) == policy_order(pols, 1.0, 200.0, 2, 0)
    assert policy_order(pols, 1.0, 200.0, 2, 0) != policy_order(pols, 1.0, 200.0, 2, 1) or \
        policy_order(pols, 1.0, 200.0, 3, 0) != policy_order(pols, 1.0, 200.0, 3, 1)


def test_transfer_floor_is_bytes_over_rate_minus_the_burst():
    assert transfer_floor_ms(0, 1e6, 1600) == 0.0
    assert transfer_floor_ms(8 * 1600, 1e3, 1600) == 0.0      # fits in the burst
    assert transfer_floor_ms(8 * 11600, 1e6, 1600) == pytest.approx(80.0)
    assert transfer_floor_ms(8000, 0.0, 1600) == math.inf


def test_a_frame_of_another_configuration_or_dropped_is_late():
    fs = _frames([50.0, None, 60.0], (3, 2)) + [{'e2e_ms': 10.0, 'exit': 1, 'split': 4}]
    assert on_time(fs, 100.0, (3, 2)) == (2, 4)
    assert on_time(fs, 100.0) == (3, 4)


def _space():
    """Return candidates (exits 1..3, top-1 .7/.8/.9; splits 0..2) and their true latencies."""
    rng = random.Random(5)
    cands, truth = [], {}
    for e, s in itertools.product((1, 2, 3), (0, 1, 2)):
        base = 40.0 * e + 30.0 * s + rng.uniform(0, 200)
        cands.append(Candidate((e, s), 0.6 + 0.1 * e, base, floor_ms=base * 0.3))
        truth[(e, s)] = [base * rng.uniform(0.9, 1.1) for _ in range(30)]
    return cands, truth


def test_oracle_search_finds_what_measuring_everything_finds():
    cands, truth = _space()
    deadlines = [60.0, 120.0, 200.0, 300.0, 500.0]
    search = OracleSearch(cands, deadlines)
    n = 0
    while (c := search.next()) is not None:
        got = []
        for f in _frames(truth[c.config], c.config):     # frames arrive one by one
            got.append(f)
            if search.stop_early(c.config, got):
                break
        search.record(c.config, got)
        n += 1
    full = OracleSearch(cands, deadlines)
    for c in cands:
        full.record(c.config, _frames(truth[c.config], c.config))
    for dl in deadlines:
        a, b = search.oracle(dl), full.oracle(dl)
        assert (a and a.accuracy) == (b and b.accuracy), dl
        # and it is the brute-force answer: the most accurate config always on time
        want = max((c.accuracy for c in cands if max(truth[c.config]) <= dl), default=None)
        assert (a and a.accuracy) == want
    assert n < len(cands) and set(search.skipped) | set(search.measured) == \
        {c.config for c in cands}


def test_a_configuration_stops_after_enough_late_frames():
    c = Candidate((1, 0), 0.7, 10.0, 0.0)
    search = OracleSearch([c], [100.0])
    fs = _frames([150.0] * EARLY_STOP_LATE, (1, 0))
    assert not search.stop_early((1, 0), fs[:-1]) and search.stop_early((1, 0), fs)


def test_oracle_rows_report_the_most_accurate_configuration_always_on_time():
    a, b = Candidate((2, 0), 0.8, 10.0, 0.0), Candidate((1, 3), 0.7, 5.0, 0.0)
    search = OracleSearch([a, b], [100.0, 200.0])
    search.record((2, 0), _frames([90.0] * 18 + [150.0] * 2, (2, 0)))   # 90 % on time at 100
    search.record((1, 3), _frames([50.0] * 20, (1, 3)))                  # always
    r100, r200 = oracle_rows(search, 1.0)
    assert r100['oracle'] == '1/3' and r100['oracle_value'] == pytest.approx(0.7)
    assert r200['oracle'] == '2/0' and r200['oracle_met'] == 1.0 and r200['oracle_frames'] == 20
    assert r200['oracle_met_lo'] < 1.0 and r200['not_measured'] == 0


def _bn_problem(encode_ms: float):
    """Return (accuracy, a 2-exit problem with a bn4 bottleneck at split 2 of exit 2)."""
    from edgent_ros.core.artifacts import EncodingCost
    from edgent_ros.core.optimizer import EdgentProblem, encoding_variants
    robot = {1: [10.0, 10.0, 1.0], 2: [10.0, 10.0, 10.0, 1.0]}
    edge = {1: [1.0, 1.0, 0.1], 2: [1.0, 1.0, 1.0, 0.1]}
    acc = {1: 0.7, 2: 0.9}
    table = {(2, 2, 'bn4'): EncodingCost(0.88, 64.0, 64.0, encode_ms, 0.5)}
    return acc, EdgentProblem(acc, robot, edge, {1: [3000, 4000, 400, 0],
                                                 2: [3000, 8000, 8000, 400, 0]}, 1.0,
                              variants=encoding_variants(robot, ['raw', 'bn4'], table, acc))


def test_encoded_configurations_are_in_the_oracles_space_with_their_own_top1():
    """edgent+bn's space: a bottleneck cut is an oracle candidate, pinned and named by encoding."""
    from edgent_ros.evaluation.paired import candidates, config_name, frame_config, frame_value
    from edgent_ros.evaluation.paired_session import config_of, config_policy, fixed_params
    acc, problem = _bn_problem(encode_ms=0.5)
    raw = candidates(problem, acc, 0.1, 0)
    coded = candidates(problem, acc, 0.1, 0, encoded=True)
    assert {c.config for c in coded} - {c.config for c in raw} == {(2, 2, 'bn4')}
    bn = next(c for c in coded if c.config == (2, 2, 'bn4'))
    assert bn.accuracy == 0.88 and bn.floor_ms == pytest.approx(64 * 8 / 0.1e6 * 1e3)
    assert config_name(bn.config) == '2/2/bn4' and config_policy(bn.config) == 'fixed:2/2/bn4'
    assert config_of('fixed:2/2/bn4') == (2, 2, 'bn4') and config_of('fixed:2/2') == (2, 2)
    assert fixed_params(bn.config) == {'policy': 'fixed', 'encodings': ['raw', 'bn4'],
                                       'fixed_configuration': '2/2/bn4'}
    assert fixed_params((2, 2))['encodings'] == ['raw']
    f_bn = {'e2e_ms': 30.0, 'exit': 2, 'split': 2, 'encoding': 'bn4'}
    f_raw = dict(f_bn, encoding='raw')
    assert frame_config(f_bn, True) == (2, 2, 'bn4') and frame_config(f_bn, False) == (2, 2)
    assert on_time([f_bn, f_raw], 50.0, (2, 2, 'bn4')) == (1, 2)   # the raw frame: another
    assert frame_value(f_bn, 50.0, acc, {(2, 2, 'bn4'): 0.88}) == 0.88
    assert frame_value(f_raw, 50.0, acc, {(2, 2, 'bn4'): 0.88}) == 0.9
    assert frame_value(f_bn, 20.0, acc, {(2, 2, 'bn4'): 0.88}) == 0.0


def _policy_frames(policy, lat, exit_index=2, reps=3):
    return [{'policy': policy, 'rep': r, 'frame_index': k, 'exit': exit_index, 'split': 0,
             'branch_len': 4, 'e2e_ms': x} for r in range(1, reps + 1) for k, x in enumerate(lat)]


def test_cell_stats_and_paired_difference():
    acc = {1: 0.7, 2: 0.8}
    slow = [50.0] * 10 + [300.0] * 10
    fs = _policy_frames('edgent', [50.0] * 20) + _policy_frames('slow', slow)
    st = cell_stats(fs, acc, 100.0)
    assert st['edgent']['value'] == pytest.approx(0.8) and st['edgent']['met'] == 1.0
    assert st['slow']['met'] == 0.5 and st['slow']['value'] == pytest.approx(0.4)
    assert st['edgent']['mid_cut'] == 0
    m, h, n = paired_diff(st['edgent']['values'], st['slow']['values'])
    assert n == 60 and m == pytest.approx(0.4) and h > 0


def test_claims_hold_and_fail_where_they_should():
    acc = {1: 0.7, 2: 0.8}

    def cell(**pols):
        return cell_stats([f for p, (lat, e) in pols.items()
                           for f in _policy_frames(p, lat, e)], acc, 100.0)
    late, ok = [500.0] * 20, [50.0] * 20
    cells = {(1.0, 50.0): cell(edgent=(late, 2), **{'exit-only': (late, 2)}),
             (1.0, 100.0): cell(edgent=(ok, 2), **{'exit-only': (ok, 1)})}
    verdicts = [c['verdict'] for c in check_claims(cells, baselines=('exit-only',))]
    assert verdicts == ['holds', 'holds', 'holds']
    cells[(1.0, 100.0)] = cell(edgent=(ok, 1), **{'exit-only': (ok, 2)})   # a baseline better
    cells[(1.0, 50.0)] = cell(edgent=(late, 2), **{'exit-only': (ok, 1)})  # and meets earlier
    verdicts = [c['verdict'] for c in check_claims(cells, baselines=('exit-only',))]
    assert verdicts == ['does not hold'] * 3
    # Edgent meeting no cell: the third claim is not tested, not held
    cells = {(1.0, 50.0): cell(edgent=(late, 2), **{'exit-only': (ok, 1)})}
    got = check_claims(cells, baselines=('exit-only',))
    assert got[1]['detail'] == 'exit-only meets 50 ms at 1 Mbit/s, Edgent at none'
    assert (got[2]['verdict'], got[2]['detail']) == ('not tested',
                                                     'Edgent meets the deadline in no cell')
    # a run without the plain policy: the widest Edgent variant, against the narrower ones
    assert claim_roles(['edgent+bn', 'edgent+enc', 'exit-only']) == \
        ('edgent+bn', ('exit-only', 'edgent+enc'))
    assert claim_roles(['edgent', 'edgent+enc', 'edge-only']) == ('edgent', ('edge-only',))
    assert claim_roles(['exit-only']) == (None, ('exit-only',))
    named = check_claims({(1.0, 50.0): cell(**{'edgent+bn': (ok, 2), 'exit-only': (ok, 1)})},
                         'edgent+bn', ('exit-only',))
    assert named[2]['claim'].startswith('where Edgent (edgent+bn) meets the deadline')


def test_same_frames_counts_policy_pairs_that_saw_the_same_images():
    def rows(policy, classes, rep=1):
        return [{'kind': 'policy', 'policy': policy, 'bandwidth_mbps': 1.0, 'deadline_ms': 100.0,
                 'rep': rep, 'frame_index': k, 'true_class': c} for k, c in enumerate(classes)]
    same = rows('a', [3, 1, 4]) + rows('b', [3, 1, 4]) + rows('c', [3, 1])
    assert same_frames(same) == (2, 2)
    assert same_frames(same + rows('d', [3, 9, 4])) == (2, 3)
    assert same_frames(rows('a', [1]) + rows('b', [2], rep=2)) == (0, 0)


def test_redo_configs_removes_only_configuration_rows(tmp_path):
    p = tmp_path / 'f.csv'
    p.write_text('kind,policy,e2e_ms\nconfig,fixed:1/0,1.50\npolicy,edgent,2.000\n'
                 'config,fixed:2/0,\n')
    assert drop_kind(p, 'config') == 2
    assert p.read_text().splitlines() == ['kind,policy,e2e_ms', 'policy,edgent,2.000']
    assert drop_kind(tmp_path / 'none.csv', 'config') == 0


def test_a_robot_calibration_is_refused_for_another_model_or_robot(tmp_path):
    f = tmp_path / 'robot_calibration.json'
    f.write_text('{"model": "resnet64", "robot_scale": 10.0, "factor": 0.7}')
    assert model_label('resnet64') == 'resnet64' and model_label(None) == ''
    assert calibration_factor(f, 10, 'resnet64') == pytest.approx(0.7)
    with pytest.raises(ValueError, match='not alexnet'):
        calibration_factor(f, 10)                      # measured on resnet64, used for AlexNet
    with pytest.raises(ValueError, match='robot scale 10, not 60'):
        calibration_factor(f, 60, 'resnet64')
    f.write_text('{"robot_scale": 60.0, "factor": 1.02}')   # before models were recorded
    assert calibration_factor(f, 60) == pytest.approx(1.02)
    with pytest.raises(ValueError, match='calibrate-robot --model'):
        calibration_factor(f, 60, 'resnet64')
    for body in ('{"robot_scale": 60.0}', 'not json', '{"robot_scale": 60, "factor": 0}'):
        f.write_text(body)
        with pytest.raises(ValueError, match=str(f)):
            calibration_factor(f, 60)
    with pytest.raises(ValueError, match='not a robot calibration'):
        calibration_factor(tmp_path / 'missing.json', 60)


def test_a_robot_calibration_is_refused_at_another_cpu_period(tmp_path):
    # the CFS throttles in steps of its period: a robot measured at one period is not the
    # robot another period emulates
    f = tmp_path / 'robot_calibration.json'
    f.write_text('{"robot_scale": 60.0, "factor": 1.02, "robot_period_us": 10000, '
                 '"spread": [0.9, 1.0, 1.2], "robot_latency": "robot_latency.json"}')
    (tmp_path / 'robot_latency.json').write_text('{}')
    assert calibration_factor(f, 60, robot_period_us=10000) == pytest.approx(1.02)
    assert calibration_spread(f, 60, robot_period_us=10000) == [0.9, 1.0, 1.2]
    for check in (calibration_factor, calibration_spread, calibration_latency):
        with pytest.raises(ValueError, match='period of 10000 us, not 100000 us'):
            check(f, 60)
    f.write_text('{"robot_scale": 60.0, "factor": 1.02}')   # before periods were recorded
    assert calibration_factor(f, 60, robot_period_us=100000) == pytest.approx(1.02)
    with pytest.raises(ValueError, match='period of 100000 us, not 10000 us'):
        calibration_factor(f, 60, robot_period_us=10000)


def test_a_robot_calibration_is_refused_with_another_pacing(tmp_path):
    # paced 'add', a quota throttle inside the layers is in the robot's time; 'total' absorbs it
    f = tmp_path / 'robot_calibration.json'
    f.write_text('{"robot_scale": 60.0, "factor": 1.02, "robot_pacing": "total", '
                 '"spread": [0.9, 1.0, 1.2], "robot_latency": "robot_latency.json"}')
    (tmp_path / 'robot_latency.json').write_text('{}')
    assert calibration_factor(f, 60, robot_pacing='total') == pytest.approx(1.02)
    for check in (calibration_factor, calibration_spread, calibration_latency):
        with pytest.raises(ValueError, match='robot pacing total, not add'):
            check(f, 60)
    f.write_text('{"robot_scale": 60.0, "factor": 1.02}')   # before pacings were recorded
    assert calibration_factor(f, 60) == pytest.approx(1.02)
    with pytest.raises(ValueError, match='robot pacing add, not total'):
        calibration_factor(f, 60, robot_pacing='total')
    # a resume at another pacing, and a pacing that does not exist
    (tmp_path / META_FILE).write_text('{"model": "", "robot_scale": 60.0}')
    with pytest.raises(ValueError, match='pacing'):
        run_paired(tmp_path, [1.0], [100.0], frames=1, reps=1, robot_scale=60.0,
                   robot_pacing='total')
    with pytest.raises(ValueError, match='compute_pacing must be one of'):
        run_paired(tmp_path, [1.0], [100.0], frames=1, reps=1, robot_scale=60.0,
                   robot_pacing='fast', fresh=True)
    assert json.loads((tmp_path / META_FILE).read_text()) == {'model': '',
                                                              'robot_scale': 60.0}


def test_the_spread_around_the_block_times_is_its_own_entry(tmp_path):
    # a planner of the measured block times meets the spread around them, not the spread of
    # the device-only frames around the profile x one factor
    f = tmp_path / 'robot_calibration.json'
    body = {'robot_scale': 60.0, 'factor': 1.02, 'spread': [0.8, 1.0, 1.4]}
    f.write_text(json.dumps(body))
    assert calibration_spread(f, 60) == calibration_spread(f, 60, of='exits') == [0.8, 1.0, 1.4]
    with pytest.raises(ValueError, match='no robot-time spread_blocks.*--refit'):
        calibration_spread(f, 60, of='blocks')
    f.write_text(json.dumps(dict(body, spread_blocks=[0.95, 1.0, 1.05])))
    assert calibration_spread(f, 60, of='blocks') == [0.95, 1.0, 1.05]
    with pytest.raises(ValueError, match='exits, blocks'):
        calibration_spread(f, 60, of='frames')


def test_a_resume_with_another_model_or_robot_is_refused(tmp_path):
    (tmp_path / META_FILE).write_text('{"model": "resnet64", "robot_scale": 10.0}')
    with pytest.raises(ValueError, match='resume it with the same model'):
        run_paired(tmp_path, [1.0], [100.0], frames=1, reps=1, robot_scale=60.0)
    # the same run, but told a robot spread it was not run with
    (tmp_path / META_FILE).write_text('{"model": "", "robot_scale": 60.0}')
    with pytest.raises(ValueError, match='robot spread'):
        run_paired(tmp_path, [1.0], [100.0], frames=1, reps=1, robot_scale=60.0,
                   robot_spread=[0.9, 1.0, 1.3])
    # a link-burst run of the version before the probe settle: its cells started on a bucket
    # a probe pair may have emptied, so new cells are not mixed into it
    (tmp_path / META_FILE).write_text('{"model": "", "robot_scale": 60.0, '
                                      '"link_burst_bytes": 1600}')
    with pytest.raises(ValueError, match='probe settle'):
        run_paired(tmp_path, [1.0], [100.0], frames=1, reps=1, robot_scale=60.0,
                   link_burst=True)
    # a run before the robot's CPU period was recorded ran at the 100 ms default
    (tmp_path / META_FILE).write_text('{"model": "", "robot_scale": 60.0}')
    with pytest.raises(ValueError, match='robot CPU period'):
        run_paired(tmp_path, [1.0], [100.0], frames=1, reps=1, robot_scale=60.0,
                   robot_period_us=10000)
    for bad in (500, 2_000_000, 2000):   # outside 1 ms..1 s; a 0.5 ms quota
        with pytest.raises(ValueError, match='cpu (period|quota)'):
            run_paired(tmp_path, [1.0], [100.0], frames=1, reps=1, robot_scale=60.0,
                       robot_period_us=bad)


def test_the_block_times_of_a_calibration_are_checked(tmp_path):
    f = tmp_path / 'robot_calibration.json'
    f.write_text('{"model": "resnet64", "robot_scale": 10.0, "factor": 0.7}')
    with pytest.raises(ValueError, match='no robot block times'):
        calibration_latency(f, 10, 'resnet64')     # written before prefixes were measured
    f.write_text('{"model": "resnet64", "robot_scale": 10.0, "factor": 0.7, '
                 '"robot_latency": "robot_latency.json"}')
    with pytest.raises(ValueError, match='robot_latency.json: not found'):
        calibration_latency(f, 10, 'resnet64')
    (tmp_path / 'robot_latency.json').write_text('{}')
    assert calibration_latency(f, 10, 'resnet64') == tmp_path / 'robot_latency.json'
    with pytest.raises(ValueError, match='not alexnet'):
        calibration_latency(f, 10)                     # the factor's checks hold for it too
    # a resume told block times its run was not planned with is refused
    (tmp_path / META_FILE).write_text('{"model": "resnet64", "robot_scale": 10.0, '
                                      '"robot_factor": 0.7}')
    with pytest.raises(ValueError, match='block times'):
        run_paired(tmp_path, [1.0], [100.0], frames=1, reps=1, robot_scale=10.0,
                   robot_factor=0.7, model='resnet64',
                   robot_latency=ARTIFACT_DIR / 'resnet64.latency.json')


def test_the_robot_spread_of_a_calibration_is_every_exit_pooled_and_checked(tmp_path):
    # exit 1 measured at 0.8 of the model, exit 2 at 1.2: one factor (1.0) for both leaves
    # each exit's error in the spread the planner plans with
    q = spread_quantiles([0.8] * 10 + [1.0] + [1.2] * 10, n=4)
    assert q == pytest.approx([0.8, 0.8, 1.2, 1.2])
    f = tmp_path / 'robot_calibration.json'
    f.write_text(json.dumps({'model': 'resnet64', 'robot_scale': 10.0, 'factor': 0.7,
                             'spread': q}))
    assert calibration_spread(f, 10, 'resnet64') == q
    with pytest.raises(ValueError, match='not alexnet'):
        calibration_spread(f, 10)                      # the factor's checks hold for it too
    f.write_text('{"model": "resnet64", "robot_scale": 10.0, "factor": 0.7}')
    with pytest.raises(ValueError, match='calibrate-robot again'):
        calibration_spread(f, 10, 'resnet64')          # written before spreads were recorded
    f.write_text('{"model": "resnet64", "robot_scale": 10.0, "factor": 0.7, "spread": [1, -1]}')
    with pytest.raises(ValueError, match='robot spread'):
        calibration_spread(f, 10, 'resnet64')
    with pytest.raises(ValueError):
        spread_quantiles([])


def test_ros_args_writes_number_lists_unquoted():
    argv = ros_args({'robot_time_spread': [0.8, 1.25], 'encodings': ['raw', 'bn4'],
                     'calibration': True, 'model': ''})
    assert argv == ['--ros-args', '-p', 'robot_time_spread:=[0.8,1.25]',
                    '-p', "encodings:=['raw','bn4']", '-p', 'calibration:=true',
                    '-p', "model:=''"]


ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r'<!-- paired-report: (\S+) -->\n(.*?)\n<!-- paired-report: end -->', re.S)


@pytest.fixture(scope='module')
def rebuilt(tmp_path_factory):
    """Return ``folder -> a copy of its inputs with the report built again`` (once per folder)."""
    done = {}

    def get(folder: str) -> Path:
        if folder not in done:
            results = ROOT / folder
            out = tmp_path_factory.mktemp('paired')
            for name in ('paired_frames.csv', 'robot_calibration.json', 'paired_meta.json',
                         'robot_latency.json'):
                if (results / name).is_file():
                    shutil.copy(results / name, out / name)
            (out / 'errors.json').write_text(json.dumps(build(out)['errors']))
            done[folder] = out
        return done[folder]
    return get


def test_benchmarks_quote_what_the_committed_paired_frames_give(rebuilt):
    # every paired-report block of BENCHMARKS is paired_report.md of its results folder,
    # regenerated here from the committed frames
    blocks = BLOCK.findall((ROOT / 'BENCHMARKS.md').read_text())
    assert blocks, 'BENCHMARKS.md quotes no paired report'
    for folder, quoted in blocks:
        results, out = ROOT / folder, rebuilt(folder)
        assert quoted.strip() == (out / 'paired_report.md').read_text().strip(), folder
        assert quoted.strip() == (results / 'paired_report.md').read_text().strip(), folder
        for png in ('paired_vs_deadline.png', 'paired_vs_bandwidth.png'):
            assert (out / png).stat().st_size > 10_000 and (results / png).is_file()


PERIOD_RUNS = {  # the columns of BENCHMARKS' "robot's CPU period" table, two runs each
    'AlexNet 100 ms': ('alexnet_blocks', 'alexnet_blocks_seed1'),
    'AlexNet 10 ms': ('alexnet_blocks_p10', 'alexnet_blocks_p10_seed1'),
    'resnet64 100 ms': ('resnet64_bn_blocks', 'resnet64_bn_blocks_seed1'),
    'resnet64 10 ms': ('resnet64_bn_blocks_p10', 'resnet64_bn_blocks_p10_seed1')}
PACING_RUNS = {  # the columns of its "robot's pacing" table
    'AlexNet 10 ms, total': ('alexnet_p10_total',),
    'resnet64 100 ms, total': ('resnet64_bn_total', 'resnet64_bn_total_seed1'),
    'resnet64 100 ms, total, encoders measured': ('resnet64_bn_encoders',
                                                  'resnet64_bn_encoders_seed1')}
PERIOD_ROWS = {'static × the calibration\'s factor, per frame': 'robot_offline',
               'block times measured through the emulation, per frame': 'robot_blocks',
               'the same, on each configuration\'s median': 'robot_config_blocks',
               'in-sample floor, per frame': 'robot_floor'}


WARM_RUNS = {  # and its "warmed-up calibration" table
    'resnet64 100 ms, add, warmed-up calibration': ('warmup_ab/resnet64_warm_1',)}
STEADY_RUNS = {  # and its "warm pacing and a steady calibration" table
    'resnet64 100 ms, warm pacing': ('resnet64_warm', 'resnet64_warm_seed1'),
    'resnet64 100 ms, warm pacing, steady within 10 %': ('resnet64_steady',
                                                         'resnet64_steady_seed1',
                                                         'resnet64_steady_seed2')}


@pytest.mark.parametrize('columns', [PERIOD_RUNS, PACING_RUNS, WARM_RUNS, STEADY_RUNS],
                         ids=['period', 'pacing', 'warmup', 'steady'])
def test_benchmarks_robot_mape_tables_are_what_the_committed_frames_give(rebuilt, columns):
    text = (ROOT / 'BENCHMARKS.md').read_text()
    head = '| model of the robot | ' + ' | '.join(
        f'{c} ({len(r)} run{"s" if len(r) > 1 else ""})' for c, r in columns.items()) + ' |'
    assert text.count(head) == 1, f'BENCHMARKS.md has no robot MAPE table {head}'
    lines = text.split(head, 1)[1].split('\n\n', 1)[0].strip().splitlines()[1:]
    assert len(lines) == len(PERIOD_ROWS)
    for line in lines:
        cells = [c.strip().strip('*').strip() for c in line.strip('|').split('|')]
        key = PERIOD_ROWS[cells[0]]
        for quoted, runs in zip(cells[1:], columns.values()):
            got = [json.loads((rebuilt(f'bench/results/{r}/paired') / 'errors.json')
                              .read_text())[key] for r in runs]
            assert quoted == ' / '.join(f'{100 * g:.1f}' for g in got) + ' %', (key, runs)


# BENCHMARKS' table of every resnet64 calibration with a paired run: how far apart its rounds
# measured the robot, and how far the block times it fitted were from the run's robot
ROUNDS_RUNS = ('resnet64_bn_blocks', 'resnet64_bn_blocks_seed1', 'resnet64_bn_blocks_p10',
               'resnet64_bn_blocks_p10_seed1', 'resnet64_bn_total', 'resnet64_bn_total_seed1',
               'resnet64_bn_encoders', 'resnet64_bn_encoders_seed1',
               'warmup_ab/resnet64_warm_1', 'resnet64_warm', 'resnet64_warm_seed1',
               'resnet64_steady', 'resnet64_steady_seed1', 'resnet64_steady_seed2')
ROUNDS_HEAD = ('| calibration (resnet64) | rounds apart | block times off each configuration\'s '
               'median | per frame | in-sample floor |')


def test_benchmarks_rounds_apart_table_is_what_the_committed_runs_give(rebuilt):
    spec = importlib.util.spec_from_file_location('robot_period',
                                                  ROOT / 'bench' / 'robot_period.py')
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    text = (ROOT / 'BENCHMARKS.md').read_text()
    assert text.count(ROUNDS_HEAD) == 1, 'BENCHMARKS.md has no rounds-apart table'
    lines = text.split(ROUNDS_HEAD, 1)[1].split('\n\n', 1)[0].strip().splitlines()[1:]
    want = []
    for run in ROUNDS_RUNS:
        s = bench.run_summary(ROOT / 'bench' / 'results' / run)
        e = json.loads((rebuilt(f'bench/results/{run}/paired') / 'errors.json').read_text())
        want.append(f'| {run} | {100 * s["rounds_apart"]:.0f} %'
                    + (f' ({s["attempts"]} attempts)' if s['attempts'] > 1 else '')
                    + f' | {100 * e["robot_config_blocks"]:.1f} %'
                    f' | {100 * e["robot_blocks"]:.1f} % | {100 * e["robot_floor"]:.1f} % |')
    assert [x.replace('**', '') for x in lines] == want


HEADLINE = re.compile(r'<!-- paired-headline: (\S+) -->\n(.*?)\n<!-- paired-headline: end -->',
                      re.S)


def test_readme_headline_is_what_the_committed_paired_summaries_give(rebuilt):
    # the README's numbers come from paired_summary.csv, and that file is what the committed
    # frames give (regenerated here)
    blocks = HEADLINE.findall((ROOT / 'README.md').read_text())
    assert len(blocks) == 2, 'README.md quotes the AlexNet and resnet64 paired summaries'
    for folder, quoted in blocks:
        results, out = ROOT / folder, rebuilt(folder)
        assert quoted.strip() == headline(read_rows(results / 'paired_summary.csv')), folder
        assert (out / 'paired_summary.csv').read_text() == \
            (results / 'paired_summary.csv').read_text(), folder


def test_headline_counts_cells_and_orders_policies():
    rows = [dict(bandwidth_mbps=bw, deadline_ms=dl, policy=p, frames=60.0, reps=3.0,
                 value=v, meets=m)
            for bw, dl in ((1.0, 100.0), (2.0, 100.0))
            for p, v, m in (('exit-only', 0.8, 1.0), ('edgent', 0.7, 0.0),
                            ('device-only', 0.5, 1.0))]
    h = headline(rows)
    assert h.startswith('2 cells (2 bandwidths, 1, 2 Mbit/s × 1 deadlines, 100 ms), '
                        '3 repetitions × 20 paired frames')
    assert 'edgent 70.0 %, exit-only 80.0 %, device-only 50.0 %' in h
    assert 'in 0 / 2 / 2 of 2 cells' in h


def test_grid_gain_weighs_cells_alike_and_pairs_by_repetition():
    def vals(xs):                                    # {(rep, frame): value}
        return {'values': {(r, k): v for r, row in enumerate(xs, 1) for k, v in enumerate(row)}}
    cells = {(0.1, 80): {'a': vals([[0.8, 0.8], [0.6, 0.6], [0.7, 0.7]]),
                         'b': vals([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]])},
             (0.1, 100): {'a': vals([[0.8], [0.8], [0.8]]),
                          'b': vals([[0.8], [0.6], [0.7]])}}
    m, h, reps, n = grid_gain(cells, 'a', 'b')
    # per repetition: a (0.8+0.8)/2, (0.6+0.8)/2, (0.7+0.8)/2; b 0.65, 0.55, 0.6
    assert (reps, n) == (3, 2) and m == pytest.approx(0.15)
    assert h == pytest.approx(0.0, abs=1e-12)        # the same gain in every repetition
    cells[(0.2, 80)] = {'a': vals([[0.1]])}          # a cell b did not run is left out
    assert grid_gain(cells, 'a', 'b')[3] == 2
    assert grid_gain(cells, 'a', 'c') == (None, None, 0, 0)


def test_robot_time_is_modelled_with_the_frames_encoder_and_per_configuration():
    """A bottleneck frame's robot time holds its encoder; each configuration counts once."""
    from edgent_ros.evaluation.paired_session import config_median_errors, device_ratios
    # bn4 at split 2 of exit 2: 20 ms of layers + a 5 ms encoder on the robot
    _, problem = _bn_problem(encode_ms=5.0)
    bn = [{'e2e_ms': 40.0, 'exit': 2, 'split': 2, 'encoding': 'bn4', 'device_ms': 25.0}] * 10
    raw = [{'e2e_ms': 40.0, 'exit': 2, 'split': 2, 'device_ms': x} for x in [30.0] * 19]
    edge_only = [{'e2e_ms': 9.0, 'exit': 2, 'split': 0, 'encoding': 'jpeg', 'device_ms': 0.0}]
    assert device_ratios(bn[:1] + raw[:1] + edge_only, problem) == pytest.approx([1.0, 1.5])
    # the bn4 configuration exactly as modelled, the raw one 1.5x: 0 and 1/3, averaged once
    # each whatever their frame counts; x 1.5 turns them round
    err, n = config_median_errors(bn + raw, problem)
    assert n == 2 and err == pytest.approx((0.0 + 0.5 / 1.5) / 2)
    assert config_median_errors(bn + raw, problem, 1.5)[0] == pytest.approx((0.5 + 0.0) / 2)
    # a configuration with fewer frames than asked for is left out
    assert config_median_errors(bn[:9] + raw, problem) == (pytest.approx(0.5 / 1.5), 1)
    assert config_median_errors(edge_only, problem) == (None, 0)


def test_cli_robot_spread_and_pacing_options(tmp_path, capsys):
    from edgent_ros.cli.evaluation import add_sweep_parser
    from edgent_ros.cli.main import main
    p = argparse.ArgumentParser()
    add_sweep_parser(p.add_subparsers(dest='cmd'))
    a = p.parse_args(['sweep', 'paired', '--robot-spread'])
    assert a.robot_spread == 'exits' and a.robot_pacing == 'add'       # as every earlier run
    a = p.parse_args(['sweep', 'paired', '--robot-spread', 'blocks', '--robot-pacing', 'total'])
    assert (a.robot_spread, a.robot_pacing) == ('blocks', 'total')
    assert p.parse_args(['sweep', 'calibrate-robot', '--robot-pacing', 'total']).robot_pacing \
        == 'total'
    for bad in (['--robot-spread', 'frames'], ['--robot-pacing', 'sum']):
        with pytest.raises(SystemExit):
            p.parse_args(['sweep', 'paired'] + bad)
    # the spread around the block times only means something to a planner of those blocks
    f = tmp_path / 'robot_calibration.json'
    f.write_text('{"robot_scale": 60.0, "factor": 1.0, "spread_blocks": [1.0, 1.1], '
                 '"steady": false}')
    rc = main(['sweep', 'paired', '--results', str(tmp_path), '--robot-calibration', str(f),
               '--robot-spread', 'blocks'])
    err = capsys.readouterr().err
    assert rc == 2 and '--robot-spread blocks needs --robot-latency' in err
    # a calibration whose rounds disagreed (calibrate-robot --steady-within) is named so
    assert f'warning: {f} is unsteady' in err
    assert not (tmp_path / 'paired').exists()
    # a calibration's warm-up: a count of frames, refused below 0 before anything runs
    assert p.parse_args(['sweep', 'calibrate-robot']).warmup_frames == 0
    assert p.parse_args(['sweep', 'calibrate-robot', '--warmup-frames', '15']).warmup_frames == 15
    rc = main(['sweep', 'calibrate-robot', '--results', str(tmp_path), '--warmup-frames', '-1'])
    assert rc == 2 and 'warmup frames must be' in capsys.readouterr().err
    assert not list((tmp_path / 'paired').glob('*.csv'))
    # the steadiness check: a percentage on the command line, a fraction to calibrate_robot
    a = p.parse_args(['sweep', 'calibrate-robot'])
    assert (a.steady_within, a.attempts) == (None, 3)
    a = p.parse_args(['sweep', 'calibrate-robot', '--steady-within', '10', '--attempts', '2'])
    assert (a.steady_within, a.attempts) == (10.0, 2)
    for bad, says in ((['--steady-within', '0'], 'steady_within must be a fraction'),
                      (['--steady-within', '150'], 'steady_within must be a fraction'),
                      (['--attempts', '0'], 'attempts must be an integer >= 1')):
        rc = main(['sweep', 'calibrate-robot', '--results', str(tmp_path)] + bad)
        assert rc == 2 and says in capsys.readouterr().err, bad
    assert not list((tmp_path / 'paired').glob('*.csv'))
