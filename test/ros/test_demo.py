"""`edgent-ros demo`: the README's first command, run small."""

import subprocess
import sys


def test_demo_runs_and_accounts_for_every_frame(domain_id):   # exports its own ROS_DOMAIN_ID
    r = subprocess.run([sys.executable, '-m', 'edgent_ros.cli.main', 'demo', '--frames', '15',
                        '--fps', '10', '--deadline-ms', '100'],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert 'summary: 15/15 frames accounted for' in out, out
    assert out.count('  frame ') == 15, out
    assert 'top-1 on these frames' in out and 'deadline met' in out
    assert 'planner: exit' in out, 'the planner decision is shown'
