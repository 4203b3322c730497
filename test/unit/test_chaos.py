"""evaluation.chaos: the soak's seeded schedule and its bookkeeping, without a testbed."""

import pytest

from edgent_ros.evaluation.chaos import (account, chaos_schedule, KINDS, memory_summary,
                                         PAUSE_S, recovery_s, soak_markdown, split_runs)


def test_schedule_is_seeded_bounded_and_has_every_kind():
    a = chaos_schedule(3, 600.0)
    assert a == chaos_schedule(3, 600.0) and a != chaos_schedule(4, 600.0)
    assert {e.kind for e in a} == set(KINDS)
    assert a[0].t_s >= 30.0 and a[-1].t_s + a[-1].pause_s <= 570.0
    for e, nxt in zip(a, a[1:]):
        assert nxt.t_s >= e.t_s + e.pause_s + 0.5 * 35.0 - 0.1   # never overlapping
    for e in a:
        lo, hi = PAUSE_S[e.kind]
        assert lo <= e.pause_s <= hi
    assert 10 <= len(a) <= 20


def test_schedule_refuses_nonsense():
    with pytest.raises(ValueError, match='no time'):
        chaos_schedule(0, 50.0)
    with pytest.raises(ValueError, match='kinds'):
        chaos_schedule(0, 600.0, kinds=['reboot_robot'])


def _o(t, seq, status=0, finished_on=0, reason=''):
    return {'t': t, 'sequence': seq, 'status': status, 'finished_on': finished_on,
            'drop_reason': reason}


def test_camera_runs_are_split_at_restarts_and_accounted():
    outs = [_o(1.0, 1), _o(2.0, 2), _o(2.5, 3, 1, 1, 'shutdown'),
            _o(10.0, 1), _o(11.0, 3), _o(11.5, 3)]
    runs = split_runs(outs, [0.0, 9.0])
    assert [len(r) for r in runs] == [3, 3]
    assert account(runs[0]) == {'frames': 3, 'outcomes': 3, 'duplicates': 0, 'missing': 0}
    assert account(runs[1]) == {'frames': 3, 'outcomes': 3, 'duplicates': 1, 'missing': 1}


def test_recovery_is_the_first_edge_answer_after_the_event():
    outs = [_o(5.0, 1), _o(12.0, 2, 0, 1), _o(13.0, 3, 1, 1, 'edge_timeout'), _o(14.5, 4)]
    assert recovery_s(10.0, outs) == pytest.approx(4.5)
    assert recovery_s(20.0, outs) is None


def test_memory_slope_from_the_longest_lived_incarnation():
    samples = [(t, 'edge_node', 1, 100.0) for t in range(0, 30, 5)]          # short-lived
    samples += [(t, 'edge_node', 2, 200.0 + 0.1 * t) for t in range(40, 400, 5)]
    m = memory_summary(samples)['edge_node']
    assert m['pid'] == 2 and m['incarnations'] == 2
    assert m['slope_mb_per_min'] == pytest.approx(6.0, rel=1e-6)   # 0.1 MB/s
    flat = memory_summary([(t, 'planner_node', 9, 70.0) for t in range(0, 300, 5)])
    assert flat['planner_node']['slope_mb_per_min'] == 0.0


def test_markdown_lists_every_event():
    body = {'trace': 't.csv', 'duration_s': 600, 'seed': 0, 'deadline_ms': 300,
            'events': [{'t_s': 30.0, 'kind': 'kill_edge', 'pause_s': 5.0,
                        'resumed_after_s': 4.2},
                       {'t_s': 80.0, 'kind': 'cut_link', 'pause_s': 3.0,
                        'resumed_after_s': None}],
            'runs': [{'frames': 10, 'outcomes': 10, 'duplicates': 0, 'missing': 0}],
            'crashes': [], 'leftover_processes': [], 'outcome_kinds': {'edge': 10},
            'memory': {'edge_node': {'incarnations': 2, 'lived_s': 300, 'first_mb': 1,
                                     'last_mb': 2, 'max_mb': 2, 'slope_mb_per_min': 0.1}},
            'max_processes_per_kind': {'edge_node': 1}}
    md = soak_markdown(body)
    assert '| 30 | kill_edge | 5 | 4.2 |' in md and '| 80 | cut_link | 3 | never |' in md
    assert '10 frames, 10 outcomes, 0 duplicates, 0 missing' in md


def test_benchmarks_quote_the_committed_soak():
    """BENCHMARKS 20's tables are the committed soak's, which accounted for every frame."""
    import json
    from pathlib import Path
    import re
    root = Path(__file__).resolve().parents[2]
    body = json.loads((root / 'bench/results/soak/soak_summary.json').read_text())
    quoted = re.search(r'<!-- soak -->\n(.*?)\n<!-- soak: end -->',
                       (root / 'BENCHMARKS.md').read_text(), re.S).group(1)
    assert quoted == soak_markdown(body)
    assert body['all_accounted'] and not body['crashes'] and not body['leftover_processes']
    assert body['duration_s'] >= 600 and {e['kind'] for e in body['events']} == set(KINDS)


def test_leftover_processes_are_those_of_the_runs_own_domain():
    """A soak counts its own nodes as leftovers, not a test's or another run's on the machine."""
    import os
    import subprocess
    import sys
    import time
    from edgent_ros.evaluation.chaos import our_processes
    p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)',
                          'lib/edgent_ros/fake_node'],
                         env=dict(os.environ, ROS_DOMAIN_ID='217'))
    try:
        time.sleep(0.3)
        assert p.pid in [pid for pid, _ in our_processes('217')]
        assert p.pid not in [pid for pid, _ in our_processes('218')]
        assert p.pid in [pid for pid, _ in our_processes()]
    finally:
        p.kill()
        p.wait()
