"""Sweep logic (issue 6): aggregation of outcomes, the resumable CSV, target check, plots."""

import argparse
import csv

import pytest

from edgent_ros.evaluation.sweep import (aggregate, append_rows, cell_key, check_grid,
                                         check_targets, CSV_FIELDS, DEFAULT_BANDWIDTHS_MBPS,
                                         DEFAULT_DEADLINES_MS, LIVE_POLICIES, markdown_table,
                                         offline_oracle, percentile, plot_cdfs, plot_predicted,
                                         plot_sweep, plot_trace, read_done, read_rows,
                                         SWEEP_POLICIES, trace_oracle)

ACC = {1: 0.7, 2: 0.8, 3: 0.85, 4: 0.86, 5: 0.9}


def outcome(seq, status=0, reason='', where=0, e=5, s=0, cls=1, true=1, e2e=50.0, met=True,
            dev=1.0, up=30.0, edge=5.0):
    return {'sequence': seq, 'status': status, 'drop_reason': reason, 'finished_on': where,
            'exit_index': e, 'split_index': s, 'class_id': cls, 'true_class_id': true,
            'device_ms': dev, 'uplink_ms': up, 'edge_ms': edge, 'edge_queue_ms': 0.5,
            'end_to_end_ms': e2e, 'deadline_ms': 100.0, 'deadline_met': met}


def test_grid_defaults_meet_the_issue():
    assert len(DEFAULT_BANDWIDTHS_MBPS) >= 8 and len(DEFAULT_DEADLINES_MS) >= 6
    assert DEFAULT_BANDWIDTHS_MBPS[0] == 0.05 and DEFAULT_BANDWIDTHS_MBPS[-1] == 10.0
    assert DEFAULT_DEADLINES_MS[0] == 100.0 and DEFAULT_DEADLINES_MS[-1] == 1000.0
    ratios = [b / a for a, b in zip(DEFAULT_BANDWIDTHS_MBPS, DEFAULT_BANDWIDTHS_MBPS[1:])]
    assert max(ratios) / min(ratios) < 1.05          # log-spaced
    assert {'device-only', 'edge-only', 'partition-only', 'exit-only', 'edgent',
            'oracle'} <= set(SWEEP_POLICIES)
    assert 'oracle' not in LIVE_POLICIES and 'true-bandwidth' in LIVE_POLICIES
    check_grid([0.05, 1.0], [100.0], ['edgent', 'true-bandwidth'])
    for bad in (([], [1.0], ['edgent']), ([0.0], [1.0], ['edgent']),
                ([1.0], [float('inf')], ['edgent']), ([1.0], [1.0], ['magic']),
                ([1.0], [1.0], ['oracle'])):
        with pytest.raises(ValueError):
            check_grid(*bad)


def test_aggregate_counts_every_frame_and_skips_closed_loop_skips():
    outs = [outcome(1, e2e=40.0), outcome(2, e2e=120.0, met=False),
            outcome(3, status=1, reason='link_busy'),          # not part of the cell
            outcome(4, status=1, reason='edge_timeout', e2e=0.0, met=False),
            outcome(5, where=1, e=1, s=10, e2e=80.0, up=0.0, edge=0.0, cls=2),  # wrong class
            outcome(6, e2e=60.0)]
    row, frames = aggregate(outs, ACC, predict=lambda e, s, x: 50.0 if s == 0 else 100.0)
    assert row['frames'] == 5 and row['classified'] == 4
    assert row['drops'] == 'edge_timeout:1'
    assert row['deadline_met'] == pytest.approx(3 / 5)     # the drop and the late one miss
    assert row['top1'] == pytest.approx(3 / 4)
    assert row['useful'] == pytest.approx(2 / 5)           # correct and on time
    assert row['expected_top1'] == pytest.approx((3 * 0.9 + 0.7) / 4)
    assert (row['exit'], row['split']) == (5, 0) and row['configs'] == '1/10:1;5/0:3'
    assert row['p50_ms'] == 60.0 and row['p99_ms'] == 120.0
    assert row['uplink_ms'] == 30.0 and row['device_ms'] == 1.0
    assert row['predicted_ms'] == pytest.approx(50.0)
    # APE of 40/120/60 vs 50 and 80 vs 100
    assert row['pred_ape'] == pytest.approx((10 / 40 + 70 / 120 + 20 / 80 + 10 / 60) / 4,
                                            abs=1e-4)
    assert [f['sequence'] for f in frames] == [1, 2, 4, 5, 6]
    assert [f['where'] for f in frames] == ['edge', 'edge', '', 'device', 'edge']
    assert frames[2]['e2e_ms'] is None and frames[2]['deadline_met'] == 0


def test_aggregate_of_nothing():
    row, frames = aggregate([], ACC)
    assert row['frames'] == 0 and row['top1'] is None and row['deadline_met'] is None
    assert row['exit'] is None and frames == []
    assert percentile([], 0.5) is None and percentile([3.0, 1.0, 2.0], 0.5) == 2.0


def test_csv_is_appended_flushed_and_resumable(tmp_path):
    path = tmp_path / 'r' / 'sweep.csv'
    assert read_done(path) == set()
    row, _ = aggregate([outcome(1)], ACC)
    append_rows(path, [dict(row, policy='edgent', bandwidth_mbps=0.107, deadline_ms=300.0)])
    append_rows(path, [dict(row, policy='oracle', bandwidth_mbps=0.107, deadline_ms=300.0)])
    with open(path) as f:
        header = next(csv.reader(f))
    assert tuple(header) == CSV_FIELDS
    assert header[:11] == ['policy', 'bandwidth_mbps', 'deadline_ms', 'frames', 'top1',
                           'deadline_met', 'p50_ms', 'p95_ms', 'p99_ms', 'exit', 'split']
    assert read_done(path) == {cell_key('edgent', 0.107, 300.0), cell_key('oracle', 0.107, 300)}
    rows = read_rows(path)
    assert rows[0]['frames'] == 1.0 and rows[0]['uplink_ms'] == 30.0
    assert rows[0]['drops'] is None
    bad = tmp_path / 'other.csv'
    bad.write_text('a,b\n1,2\n')
    with pytest.raises(ValueError, match='not a sweep results CSV'):
        read_done(bad)


def _row(policy, bw, dl, acc, met, e=5, s=0):
    return {'policy': policy, 'bandwidth_mbps': bw, 'deadline_ms': dl, 'expected_top1': acc,
            'deadline_met': met, 'useful': met * acc, 'exit': e, 'split': s}


def test_check_targets_and_table():
    rows = [_row('oracle', 1.0, 100.0, 0.85, 1.0), _row('edgent', 1.0, 100.0, 0.85, 1.0),
            _row('device-only', 1.0, 100.0, 0.70, 1.0, 1, 10),
            _row('edge-only', 1.0, 100.0, 0.90, 0.2),          # more accurate but late
            _row('oracle', 0.1, 100.0, 0.85, 1.0), _row('edgent', 0.1, 100.0, 0.80, 0.9),
            _row('exit-only', 0.1, 100.0, 0.82, 1.0)]
    res = check_targets(rows)
    assert res['cells'] == 2 and res['oracle_meets'] == 2
    assert res['edgent_meets_where_oracle'] == 1 and res['deadline_fail'] == [(0.1, 100.0, 0.9)]
    assert res['acc_ge_baselines'] == 1 and res['acc_fail'] == [(0.1, 100.0, ['exit-only'])]
    assert res['within_1pt_oracle'] == 1
    table = markdown_table(rows, 100.0, 'useful')
    assert table.splitlines()[0].startswith('| Mbit/s | device-only')
    assert '| 1 | 70 (1/10) | 18 (5/0) | – | – | 85 (5/0) | – | – | – | 85 (5/0) |' in table


def test_plots_are_written(tmp_path):
    rows = []
    frames = []
    for bw in (0.05, 0.5, 5.0):
        for dl in (100.0, 300.0):
            for i, p in enumerate(SWEEP_POLICIES):
                rows.append(_row(p, bw, dl, 0.7 + 0.02 * i, 1.0 - 0.1 * i))
                for k in range(5):
                    frames.append({'policy': p, 'bandwidth_mbps': bw, 'deadline_ms': dl,
                                   'e2e_ms': 10.0 * (k + 1) * (i + 1), 'predicted_ms': 30.0,
                                   'where': 'edge' if k % 2 else 'device'})
    for png in (plot_sweep(rows, tmp_path / 's.png'),
                plot_cdfs(frames, tmp_path / 'c.png', [0.05, 5.0], 300.0),
                plot_predicted(frames, tmp_path / 'p.png'),
                plot_trace({'edgent': {'deadline_ms': 300.0, 'rates': [(0, 1.0), (5, 0.1)],
                                       'estimate': [(1, 0.9), (6, 0.2)],
                                       'frames': [(1, 50.0, 5, 0, 1, ''),
                                                  (6, None, 5, 0, 0, 'edge_timeout')]}},
                           tmp_path / 't.png', 'trace')):
        assert png.exists() and png.stat().st_size > 5000
        assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_cli_registers_sweep():
    from edgent_ros.cli.evaluation import add_sweep_parser, cmd_sweep
    from edgent_ros.evaluation.sweep_session import trace_rows
    p = argparse.ArgumentParser()
    add_sweep_parser(p.add_subparsers(dest='cmd'))
    a = p.parse_args(['sweep', 'run', '--frames', '5', '--bandwidths', '0.1', '1',
                      '--policies', 'edgent', 'true-bandwidth'])
    assert a.func is cmd_sweep and a.frames == 5 and a.bandwidths == [0.1, 1.0]
    with pytest.raises(SystemExit):
        p.parse_args(['sweep', 'run', '--policies', 'magic'])
    assert p.parse_args(['sweep', 'traces', '--trace', 'x.csv']).trace == ['x.csv']
    assert p.parse_args(['sweep', 'plot']).action == 'plot'
    del trace_rows


def test_trace_segment(tmp_path):
    from edgent_ros.evaluation.sweep_session import trace_rows
    f = tmp_path / 't.csv'
    f.write_text('t_s,mbps\n0,1.0\n5,2.0\n10,0.0\n15,3.0\n')
    assert trace_rows(f, 5, 10) == [(0.0, 2.0), (5.0, 0.0)]
    assert trace_rows(f, 7, 10) == [(0.0, 2.0), (3.0, 0.0), (8.0, 3.0)]
    with pytest.raises(ValueError):
        trace_rows(f, -5, 2)


def _frame(policy, bw, dl, e, s, e2e, correct=1, where='edge'):
    return {'policy': policy, 'bandwidth_mbps': bw, 'deadline_ms': dl, 'exit': e, 'split': s,
            'e2e_ms': e2e, 'correct': correct, 'where': where, 'drop_reason': '',
            'device_ms': 1.0, 'uplink_ms': 10.0, 'edge_ms': 2.0, 'predicted_ms': None}


def test_offline_oracle_picks_the_most_accurate_config_that_met_the_deadline():
    frames = []
    # at 1 Mbit/s: edge-only 5/0 takes 150-159 ms, device-only exit 1 takes 50 ms,
    # exit 3 on the robot 90-119 ms
    frames += [_frame('edge-only', 1.0, 100.0, 5, 0, 150.0 + k) for k in range(10)]
    frames += [_frame('device-only', 1.0, 100.0, 1, 10, 50.0, where='device')
               for _ in range(10)]
    frames += [_frame('edgent', 1.0, 200.0, 3, 12, 90.0 + 3 * k, where='device')
               for k in range(10)]
    frames += [_frame('edgent', 1.0, 200.0, 2, 10, 10.0) for _ in range(3)]  # too few frames
    frames.append({**_frame('edgent', 1.0, 200.0, 3, 12, None, where=''),
                   'drop_reason': 'edge_timeout'})
    rows = {r['deadline_ms']: r for r in offline_oracle(frames, ACC)}
    assert set(rows) == {100.0, 200.0}
    # 100 ms: exit 3 meets it on 4/11 frames, edge-only never: the device-only exit 1
    assert (rows[100.0]['exit'], rows[100.0]['split']) == (1, 10)
    assert rows[100.0]['deadline_met'] == 1.0 and rows[100.0]['expected_top1'] == 0.7
    # 200 ms: edge-only (0.9) meets it on every frame
    assert (rows[200.0]['exit'], rows[200.0]['split']) == (5, 0)
    assert rows[200.0]['p50_ms'] == 154.0 and rows[200.0]['frames'] == 10
    # nothing meets 10 ms: the highest rate wins (all tie at 0 -> the most accurate)
    only = offline_oracle([f for f in frames if f['exit'] in (1, 3)] +
                          [_frame('x', 1.0, 10.0, 1, 10, 50.0)], ACC)
    r10 = [r for r in only if r['deadline_ms'] == 10.0][0]
    assert r10['deadline_met'] == 0.0 and r10['exit'] == 3


def test_trace_oracle_uses_the_sweep_cell_below_each_second():
    rows = [{'policy': 'oracle', 'bandwidth_mbps': bw, 'deadline_ms': 300.0, 'exit': e,
             'split': s, 'top1': u, 'expected_top1': u, 'deadline_met': 1.0, 'useful': u}
            for bw, e, s, u in ((0.05, 1, 10, 0.7), (1.0, 5, 0, 0.9))]
    rows.append({'policy': 'device-only', 'bandwidth_mbps': 0.05, 'deadline_ms': 300.0,
                 'exit': 2, 'split': 10, 'top1': 0.8, 'expected_top1': 0.8,
                 'deadline_met': 1.0, 'useful': 0.8})
    # 2 s at 2 Mbit/s (cell 1.0), 1 s outage (device-only), 1 s at 0.5 (cell 0.05 < device)
    o = trace_oracle(rows, [(0, 2.0), (2, 0.0), (3, 0.5)], 4.0, 300.0)
    assert o['expected_top1'] == pytest.approx((0.9 * 2 + 0.8 + 0.8) / 4)
    assert o['configs'] == '2/10:2s;5/0:2s'
    assert trace_oracle(rows, [(0, 1.0)], 1.0, 100.0) is None


def test_encoded_frames_count_with_their_measured_accuracy_and_stay_out_of_the_oracle():
    """A JPEG frame counts at the JPEG top-1; the oracle only searches raw configurations."""
    from edgent_ros.evaluation.sweep import encoding_gain, offline_oracle, planner_params
    base = {'status': 0, 'drop_reason': '', 'finished_on': 0, 'exit_index': 5, 'split_index': 0,
            'class_id': 1, 'true_class_id': 1, 'device_ms': 1.0, 'uplink_ms': 10.0,
            'edge_ms': 1.0, 'edge_queue_ms': 0.0, 'end_to_end_ms': 20.0, 'deadline_met': True}
    outs = [dict(base, sequence=i, encoding='jpeg') for i in range(10)]
    row, frames = aggregate(outs, ACC, enc_accuracy={(5, 0, 'jpeg'): 0.80})
    assert row['expected_top1'] == pytest.approx(0.80) and row['encoding'] == 'jpeg'
    assert row['configs'] == '5/0/jpeg:10'
    assert {f['encoding'] for f in frames} == {'jpeg'}
    row, _ = aggregate([dict(base, sequence=1, encoding='png')], ACC,
                       enc_accuracy={(5, 0, 'png'): 0.1})
    assert row['expected_top1'] == pytest.approx(ACC[5])   # lossless: the exit's own
    for f in frames:
        f.update(policy='edgent+enc', bandwidth_mbps=1.0, deadline_ms=100.0)
    assert offline_oracle(frames, ACC, min_frames=5) == []
    assert planner_params('edgent+enc')['encodings'][0] == 'raw'
    assert planner_params('edge-only') == {'policy': 'edge-only', 'encodings': ['raw'],
                                           'decision_rule': 'chance', 'repair_model': True}
    assert planner_params('edgent-point') == {'policy': 'edgent', 'encodings': ['raw'],
                                              'decision_rule': 'point', 'repair_model': True}
    assert planner_params('edgent-norepair') == {'policy': 'edgent', 'encodings': ['raw'],
                                                 'decision_rule': 'chance',
                                                 'repair_model': False}
    rows = [{'policy': 'edgent', 'bandwidth_mbps': 1.0, 'deadline_ms': d, 'deadline_met': m,
             'on_time_accuracy': 0.5} for d, m in ((100, 0.5), (200, 1.0))]
    rows += [{'policy': 'edgent+enc', 'bandwidth_mbps': 1.0, 'deadline_ms': d,
              'deadline_met': 1.0, 'on_time_accuracy': 0.8} for d in (100, 200)]
    gain = encoding_gain(rows)
    assert gain['edgent+enc_meets'] == 2 and gain['edgent_meets'] == 1
    assert gain['only_edgent+enc'] == [(1.0, 100.0)] and gain['only_edgent'] == []


def test_frame_accuracy_credits_lossless_encodings_with_the_exit():
    """LOSSLESS is core.codec's; an empty encoding (rows from before encodings) counts as raw."""
    from edgent_ros.core.codec import LOSSLESS
    from edgent_ros.evaluation import sweep
    from edgent_ros.evaluation.sweep import frame_accuracy
    assert sweep.LOSSLESS is LOSSLESS
    acc = {2: 0.8}
    enc = {(2, 0, 'png'): 0.5, (2, 0, 'raw'): 0.5, (2, 0, 'jpeg'): 0.77}
    for e in ('', None, 'raw', 'png', 'compressed'):
        assert frame_accuracy(acc, enc, 2, 0, e) == 0.8
    assert frame_accuracy(acc, enc, 2, 0, 'jpeg') == 0.77
    assert frame_accuracy(acc, None, 2, 0, 'jpeg') == 0.8


def test_write_oracle_keeps_encoded_frames_at_their_own_top1(tmp_path):
    """Recomputing on-time accuracy with the oracle must not credit a JPEG frame the raw top-1."""
    from edgent_ros.core.artifacts import load_accuracy, load_encodings
    from edgent_ros.evaluation.sweep import FRAME_FIELDS
    from edgent_ros.evaluation.sweep_session import write_oracle
    acc, enc = load_accuracy(), {k: v.top1 for k, v in load_encodings().items()}
    base = {'status': 0, 'drop_reason': '', 'finished_on': 0, 'exit_index': 5, 'split_index': 0,
            'class_id': 1, 'true_class_id': 1, 'device_ms': 1.0, 'uplink_ms': 10.0,
            'edge_ms': 1.0, 'edge_queue_ms': 0.0, 'end_to_end_ms': 20.0, 'deadline_met': True}
    row, frames = aggregate([dict(base, sequence=i, encoding='jpeg') for i in range(10)], acc,
                            enc_accuracy=enc)
    cell = {'policy': 'edgent+enc', 'bandwidth_mbps': 0.05, 'deadline_ms': 300.0}
    row.update(cell)
    for f in frames:
        f.update(cell)
    out, frames_csv = tmp_path / 'sweep.csv', tmp_path / 'sweep_frames.csv'
    append_rows(out, [row], CSV_FIELDS)
    append_rows(frames_csv, frames, FRAME_FIELDS)
    write_oracle(out, frames_csv)
    got, = [r for r in read_rows(out) if r['policy'] == 'edgent+enc']
    assert enc[(5, 0, 'jpeg')] < acc[5]
    assert float(got['on_time_accuracy']) == pytest.approx(enc[(5, 0, 'jpeg')], abs=1e-4)
