"""`edgent-ros demo`: the README's first command, run small (the testbed one: test/testbed)."""

import signal
import subprocess
import sys

from edgent_ros.cli import ros
from edgent_ros.cli.main import build_parser


def test_demo_runs_and_accounts_for_every_frame(domain_id):   # exports its own ROS_DOMAIN_ID
    r = subprocess.run([sys.executable, '-m', 'edgent_ros.cli.main', 'demo', '--plain',
                        '--frames', '15', '--fps', '10', '--deadline-ms', '100'],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert 'not on the link testbed' not in out, '--plain needs no explanation'
    assert 'summary: 15/15 frames accounted for' in out, out
    assert out.count('  frame ') == 15, out
    assert 'top-1 on these frames' in out and 'deadline met' in out
    assert 'planner: exit' in out, 'the planner decision is shown'


def _dispatch(monkeypatch, capsys, argv, reason):
    """Run ``cmd_demo`` with the testbed check answering ``reason``; return (mode, args, out)."""
    ran = []
    monkeypatch.setattr(ros, 'unavailable_reason', lambda: reason)
    monkeypatch.setattr(ros, 'run_demo', lambda a: ran.append(('plain', a)) or 0)
    monkeypatch.setattr(ros, 'run_testbed_demo', lambda a: ran.append(('testbed', a)) or 0)
    args = build_parser().parse_args(['demo', *argv])
    assert ros.cmd_demo(args) == 0
    (mode, got), = ran
    return mode, got, capsys.readouterr().out


def test_without_the_testbed_one_line_says_why_then_the_plain_demo(monkeypatch, capsys):
    mode, args, out = _dispatch(monkeypatch, capsys, [], 'the testbed needs root (...)')
    assert mode == 'plain'
    lines = [line for line in out.splitlines() if line]
    assert len(lines) == 1 and 'not on the link testbed (the testbed needs root' in lines[0]
    assert '--plain' in lines[0]
    # the plain demo's defaults, as before the testbed demo existed
    assert (args.frames, args.fps, args.deadline_ms) == (60, 10.0, 100.0)
    mode, args, _ = _dispatch(monkeypatch, capsys, ['--frames', '7', '--deadline-ms', '50'],
                              'tc (iproute2) not found')
    assert mode == 'plain' and (args.frames, args.deadline_ms) == (7, 50.0)


def test_testbed_demo_when_available_unless_plain_or_fixed(monkeypatch, capsys):
    mode, args, out = _dispatch(monkeypatch, capsys, ['--policy', 'exit-only'], '')
    assert mode == 'testbed' and out == '' and args.policy == 'exit-only'
    assert args.deadline_ms is None and args.fps is None   # the testbed demo's own defaults
    mode, _, out = _dispatch(monkeypatch, capsys, ['--plain'], '')
    assert mode == 'plain' and out == ''
    mode, _, out = _dispatch(monkeypatch, capsys, ['--exit', '2', '--split', '0'], '')
    assert mode == 'plain' and 'fixed --exit/--split' in out


def test_testbed_that_cannot_be_built_falls_back(monkeypatch, capsys):
    def fail(args):
        raise ros.TestbedUnavailable('the testbed could not be built: RTNETLINK: no veth')
    monkeypatch.setattr(ros, 'unavailable_reason', lambda: '')
    monkeypatch.setattr(ros, 'run_testbed_demo', fail)
    monkeypatch.setattr(ros, 'run_demo', lambda a: 0)
    before = [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)]
    assert ros.cmd_demo(build_parser().parse_args(['demo'])) == 0
    # the testbed run's handlers (SIGTERM ends it through its finally blocks) are undone
    assert [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)] == before
    assert 'not on the link testbed (the testbed could not be built: RTNETLINK' in \
        capsys.readouterr().out
