"""The lossy sweep's bookkeeping (issue 20 item 2): estimate calibration, relay counts, summary."""

import pytest

from edgent_ros.evaluation.lossy_session import (accounted, check_impairments, link_columns,
                                                 LOSSY_FIELDS, lossy_key, lossy_markdown,
                                                 read_lossy_done, relay_columns, summarize)
from edgent_ros.evaluation.sweep import append_rows


def test_estimate_calibration_against_the_shaped_rate():
    links = [{'uplink_bandwidth_bps': b, 'rtt_ms': r} for b, r in
             ((0.5e6, 40.0), (1.0e6, 42.0), (2.5e6, -1.0), (0.0, 41.0), (0.9e6, 44.0))]
    c = link_columns(links, 1e6)
    assert c['estimates'] == 4                        # 0 = no estimate (edge unreachable)
    assert c['est_ratio_p50'] == pytest.approx(0.95)  # median of 0.5, 0.9, 1.0, 2.5
    assert c['est_within_2x'] == pytest.approx(0.75)  # 2.5x is out
    assert c['rtt_ms_p50'] == pytest.approx(41.5)     # unknown RTTs (< 0) left out
    assert link_columns([], 1e6) == {'estimates': 0, 'est_ratio_p50': None,
                                     'est_within_2x': None, 'rtt_ms_p50': None}


def _stats(lost_up, fwd_up, lost_down, fwd_down, drops=0):
    return {'up': {'dropped_loss': lost_up, 'forwarded': fwd_up, 'hold_ms': {'p50': 20.1}},
            'down': {'dropped_loss': lost_down, 'forwarded': fwd_down,
                     'hold_ms': {'p50': 20.2}},
            'socket_stats': {'a': {'drops': drops}, 'b': {'drops': 0}}}


def test_relay_columns_are_the_cells_own_counts():
    c = relay_columns(_stats(10, 100, 0, 50), _stats(15, 195, 1, 69, drops=2))
    assert c['relay_loss_up'] == pytest.approx(0.05) and c['relay_loss_down'] == 0.05
    assert c['relay_hold_up_ms'] == 20.1 and c['relay_socket_drops'] == 2
    assert relay_columns(_stats(0, 0, 0, 0), _stats(0, 0, 0, 0))['relay_loss_up'] is None


def test_accounted_means_one_outcome_per_frame_without_gaps():
    assert accounted([{'sequence': s} for s in (7, 5, 6)])
    assert not accounted([{'sequence': s} for s in (5, 7)])        # frame 6 has no outcome
    assert not accounted([{'sequence': s} for s in (5, 6, 6)])     # one frame twice
    assert not accounted([])


@pytest.mark.parametrize('delays,losses,match', [([], [0.0], 'at least one'),
                                                 ([-1.0], [0.0], 'delay'),
                                                 ([10.0], [1.0], 'loss'),
                                                 ([10.0], [-0.1], 'loss')])
def test_bad_impairment_grids_are_refused(delays, losses, match):
    with pytest.raises(ValueError, match=match):
        check_impairments(delays, losses)


def _row(policy, rep, met, acc, configs, drops=''):
    return {'policy': policy, 'bandwidth_mbps': 0.5, 'deadline_ms': 400.0, 'delay_ms': 20.0,
            'loss': 0.05, 'rep': rep, 'frames': 30, 'deadline_met': met,
            'on_time_accuracy': acc, 'p95_ms': 300.0, 'configs': configs, 'drops': drops,
            'planner_ape': 0.1, 'pred_ape': 0.2, 'est_ratio_p50': 1.0, 'est_within_2x': 1.0,
            'rtt_ms_p50': 40.0, 'relay_loss_up': 0.05, 'accounted': 1}


def test_resume_keys_and_summary_over_repetitions(tmp_path):
    rows = [_row('edgent', 0, 0.9, 0.8, '5/0:27;1/10:3', 'link_busy:1'),
            _row('edgent', 1, 1.0, 0.86, '5/0:30'),
            _row('edgent', 2, 0.95, 0.83, '5/0:30', 'link_busy:2'),
            _row('exit-only', 0, 1.0, 0.7, '2/0:30')]
    path = tmp_path / 'lossy.csv'
    append_rows(path, rows, LOSSY_FIELDS)
    assert read_lossy_done(path) == {lossy_key('edgent', 0.5, 400, 20, 0.05, r) for r in
                                     range(3)} | {lossy_key('exit-only', 0.5, 400, 20, 0.05, 0)}
    assert read_lossy_done(tmp_path / 'none.csv') == set()
    s = {r['policy']: r for r in summarize(rows)}
    e = s['edgent']
    assert e['reps'] == 3 and e['frames'] == 90 and e['accounted']
    assert e['deadline_met'] == pytest.approx(0.95)
    assert e['deadline_met_lo'] < 0.95 < e['deadline_met_hi'] <= 1.0
    assert e['configs'] == '1/10:3;5/0:87' and e['drops'] == 'link_busy:3'
    assert s['exit-only']['deadline_met_lo'] is None          # one repetition: no interval
    md = lossy_markdown(summarize(rows))
    assert md.count('\n') == 3 and '| 0.5 | 20 | 5% | edgent | 95% [' in md


def test_benchmarks_quote_what_the_committed_lossy_runs_give():
    """BENCHMARKS 18's table is the summary of the committed lossy.csv, to the character."""
    import re
    from pathlib import Path
    from edgent_ros.evaluation.sweep import read_rows
    root = Path(__file__).resolve().parents[2]
    blocks = re.findall(r'<!-- lossy-report: (\S+) -->\n(.*?)<!-- lossy-report: end -->',
                        (root / 'BENCHMARKS.md').read_text(), re.S)
    assert blocks, 'BENCHMARKS.md quotes no lossy report'
    for folder, quoted in blocks:
        rows = read_rows(root / folder / 'lossy.csv')
        assert quoted == lossy_markdown(summarize(rows)) + '\n'
        assert all(r['accounted'] for r in rows)      # every frame of every run has one outcome
