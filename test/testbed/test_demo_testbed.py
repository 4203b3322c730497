"""
``edgent-ros demo`` on the link testbed: the planner's decisions follow the shaped link.

The schedule, the summary and the decision lines are checked without root; one short run of the
real nodes (root, else skipped with the reason) replays a 1 -> 0.05 Mbit/s step and must print
at least two distinct configurations, edge-only above the boundary and the robot below it.
"""

import os
import re
import subprocess

import pytest

from edgent_ros.cli.main import build_parser
from edgent_ros.core.arch import branch_specs
from edgent_ros.core.artifacts import load_accuracy, read_config
from edgent_ros.core.optimizer import decide
from edgent_ros.evaluation import demo_session as dm
from edgent_ros.evaluation import testbed as tbm
from edgent_ros.evaluation.sweep_session import planner_problem

CFG = read_config()
ACC = load_accuracy(model_id=CFG.model_id())
BRANCH = {e: len(branch_specs(CFG, e)) for e in ACC}


def test_schedule_crosses_the_decision_boundary():
    # with the shipped models at the demo's robot class and deadline, the schedule's levels
    # sit on both sides of the Edgent boundary: edge-only above, the robot alone below
    _, problem = planner_problem(dm.DEFAULT_ROBOT_SCALE)
    player, dur, what = dm.demo_player()
    assert dur == dm.DEMO_DURATION_S and what == 'demo schedule'
    levels = [mbps for _, mbps in player.schedule(dur)]
    assert levels == [mbps for _, mbps in dm.DEMO_SCHEDULE]
    configs = {(d.exit_index, d.split_index) for d in
               (decide(problem, mbps * 1e6, dm.DEMO_DEADLINE_MS) for mbps in levels)}
    assert (5, 0) in configs
    assert any(s == BRANCH[e] for e, s in configs), configs   # device-only at some level
    # every level is at least 1.5x away from where the decision changes (no flapping)
    for mbps in levels:
        here = decide(problem, mbps * 1e6, dm.DEMO_DEADLINE_MS).config
        for f in (1 / 1.5, 1.5):
            assert decide(problem, mbps * f * 1e6, dm.DEMO_DEADLINE_MS).config == here, mbps


def test_trace_segment_and_bad_duration(tmp_path):
    csv = tmp_path / 't.csv'
    csv.write_text('t_s,mbps\n0,3.0\n10,0.5\n20,0.05\n30,1.0\n')
    player, dur, what = dm.demo_player(csv, start_s=10, duration_s=15)
    assert dur == 15 and 't.csv from 10 s' in what
    assert player.schedule(dur) == [(0.0, 0.5), (10.0, 0.05)]
    with pytest.raises(ValueError, match='duration'):
        dm.demo_player(duration_s=0)


def _out(seq, stamp, e, s, ok=True, met=True, reason=''):
    return {'sequence': seq, 'stamp': stamp, 'status': 0 if ok else 2, 'drop_reason': reason,
            'exit_index': e, 'split_index': s, 'encoding': 'raw', 'class_id': 1,
            'true_class_id': 1 if seq % 2 else 2, 'end_to_end_ms': 40.0 + seq,
            'deadline_met': met}


def test_summary_per_configuration_and_link_level():
    rates = [(100.0, 2.0), (110.0, 0.05)]
    outs = [_out(1, 101, 5, 0), _out(2, 102, 5, 0), _out(3, 111, 5, 0, met=False),
            _out(4, 112, 1, 10), _out(5, 113, 1, 10),
            _out(6, 113.5, 1, 10, ok=False, reason='link_busy'),    # closed-loop skip
            _out(7, 114, 1, 10, ok=False, reason='edge_timeout')]
    lines = dm.summarize_demo(outs, rates, BRANCH, ACC)
    text = '\n'.join(lines)
    assert lines[0].startswith('summary: 6 frames (5 classified, 1 dropped')
    assert '1 closed-loop skips not counted' in lines[0]
    assert 'deadline met:  66.7 % of frames' in text
    assert re.search(r'exit 5 split  0 \(edge-only, raw\):\s+3 frames, deadline met  66.7 %',
                     text), text
    assert re.search(r'exit 1 split 10 \(device-only, raw\):\s+2 frames', text), text
    assert re.search(r'2 Mbit/s:\s+2 frames, deadline met 100.0 %; exit/split used: 5/0 x2',
                     text), text
    assert re.search(r'0.05 Mbit/s:\s+4 frames, deadline met  50.0 %; exit/split used: 1/10 x2, '
                     r'5/0 x1', text), text
    assert dm.summarize_demo([], rates, BRANCH, ACC)[0].startswith('summary: 0 frames')


def test_decision_line_says_when_what_and_why():
    d = {'exit_index': 1, 'split_index': 10, 'encoding': 'raw', 'predicted_total_ms': 150.2,
         'deadline_ms': 300.0, 'feasible': True, 'bandwidth_bps': 49_600.0,
         'reason': 'edgent: exit 1 split 10 (device-only) predicted 234.609 ms <= deadline '
                   '300.000 ms at 0.045 Mbit/s, top1 0.777; more accurate exits need >= 432 ms'}
    line = dm.decision_line(33.2, 0.05, d, BRANCH, ACC)
    assert line.startswith('==>  33.2 s  link 0.05 Mbit/s, planner\'s estimate 0.0496: exit 1 '
                           'split 10 (device-only, raw), test-set top-1 77.7 %, predicted '
                           '150 ms, deadline 300 ms\n'), line
    assert line.endswith('why: predicted 234.609 ms <= deadline 300.000 ms at 0.045 Mbit/s, '
                         'top1 0.777; more accurate exits need >= 432 ms')
    d.update(feasible=False, reason='edgent: no configuration meets deadline 300.000 ms at '
                                    '0.0397 Mbit/s; fastest is exit 1 split 10 (device-only) at '
                                    '346.627 ms')
    line = dm.decision_line(34.0, 0.05, d, BRANCH, ACC)
    assert '(none meets it)' in line and 'why: no configuration meets deadline' in line


# ------------------------------------------------------------------------------------------
# The real nodes (root)

REASON = tbm.unavailable_reason()


@pytest.mark.skipif(bool(REASON), reason=REASON or 'testbed available')
def test_testbed_demo_prints_decisions_that_follow_the_link(tmp_path, capsys, installed_nodes):
    trace = tmp_path / 'step.csv'
    trace.write_text('t_s,mbps\n0,1.0\n12,0.05\n')
    name = f'dm{os.getpid():x}'[:8]
    args = build_parser().parse_args(['demo', '--trace', str(trace), '--duration', '30'])
    assert dm.run_testbed_demo(args, name=name) == 0
    out = capsys.readouterr().out
    decisions = re.findall(r'^==> +([\d.]+) s  link ([\d.]+) Mbit/s.*?: exit (\d) split (\d+) '
                           r'\(([^,]+),', out, re.M)
    configs = {(e, s) for _, _, e, s, _ in decisions}
    assert len(configs) >= 2, out
    # edge-only at 1 Mbit/s; on the robot (device-only) once the link is at 0.05 Mbit/s
    assert ('5', '0') in configs, out
    assert any(where == 'device-only' and float(t) >= 12.0 for t, _, _, _, where in decisions), \
        out
    assert re.search(r'^summary: \d+ frames', out, re.M) and 'per configuration' in out, out
    assert re.search(r'^  decisions: \d+ configuration changes, [2-9] distinct', out, re.M), out
    assert len(re.findall(r'Mbit/s  frame ', out)) >= 20, out
    # nothing left behind: namespaces, veth, cgroup
    names = subprocess.run(['ip', 'netns', 'list'], capture_output=True, text=True).stdout
    assert f'{name}_robot' not in names and f'{name}_edge' not in names
    assert not tbm.Testbed(name=name).exists()['cgroup']
