"""
Delay and loss on the testbed (issue 20, item 2): the relay namespace, as configured, really run.

Root only (skipped with the reason otherwise). Probes cross the relay from sockets in the robot
and edge namespaces of this process (one clock: one-way times), and the camera and edge nodes run
across a lossy, delayed link with every frame accounted for.
"""

import math
import os
from pathlib import Path
import re
import subprocess

import pytest

from edgent_ros.evaluation import testbed as tbm
from edgent_ros.evaluation.testbed import probe_link, probe_summary, Testbed

REASON = tbm.unavailable_reason()
needs_root = pytest.mark.skipif(bool(REASON), reason=REASON or 'testbed available')
NAME = f'er{os.getpid():x}'[:8]


def _netns() -> list:
    out = subprocess.run(['ip', 'netns', 'list'], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _relay_pids(tb: Testbed) -> list:
    """Return the pids of this testbed's relay processes (by command line, from /proc)."""
    want = ['edgent_ros.evaluation.relay', '--a', tb.link_ifs[0]]
    pids = []
    for d in Path('/proc').iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / 'cmdline').read_bytes().decode(errors='replace').split('\0')
        except OSError:
            continue
        if any(argv[i:i + 3] == want for i in range(len(argv))) and argv[0] != 'ip':
            pids.append(int(d.name))
    return pids


@pytest.fixture
def relay_tb():
    for ns in _netns():      # leftovers of a crashed earlier run (its pid is gone)
        m = re.match(r'^er([0-9a-f]{1,6})_(robot|edge|link)$', ns)
        if m and not os.path.exists(f'/proc/{int(m.group(1), 16)}'):
            Testbed(name=f'er{m.group(1)}').teardown()
    tb = Testbed(name=NAME, rate_mbps=10.0, relay=True, robot_quota=None, relay_seed=5)
    yield tb
    tb.teardown()
    assert not {tb.robot_ns, tb.edge_ns, tb.link_ns} & set(_netns())
    assert not _relay_pids(tb) and not tb.relay_control.exists()


@needs_root
def test_configured_delay_and_loss_are_observed(relay_tb):
    tb = relay_tb.setup()
    assert tb.exists()['link_ns'] and len(_relay_pids(tb)) == 1
    sent, got, _ = probe_link(tb, 'up', count=400, interval_s=0.002)
    clean = probe_summary(sent, got)
    assert clean['loss'] == 0.0 and clean['one_way_ms']['p50'] < 5.0
    tb.set_impairment(up={'delay_ms': 30, 'loss': 0.1}, down={'delay_ms': 10}, reset_stats=True)
    up_sent, got, _ = probe_link(tb, 'up', count=1500, interval_s=0.002)
    up = probe_summary(up_sent, got)
    # the configured rate within 3.9 binomial standard deviations of the drops seen (two-sided
    # 1e-4): inside the 95 % interval, as asserted before, fails one run in 20 by chance alone
    lost = up_sent - up['received']
    assert abs(lost - 0.1 * up_sent) <= 3.9 * math.sqrt(up_sent * 0.1 * 0.9), up
    assert 30.0 <= up['one_way_ms']['p50'] <= 32.5, up
    sent, got, _ = probe_link(tb, 'down', count=400, interval_s=0.002)
    down = probe_summary(sent, got)
    assert down['loss'] == 0.0 and 10.0 <= down['one_way_ms']['p50'] <= 12.5, down
    st = tb.relay_stats()
    assert st['up']['configured'] == {'delay_ms': 30, 'jitter_ms': 0.0, 'loss': 0.1,
                                      'burst': 1.0}
    # what the relay counts is what the probes saw (a few frames of other traffic besides)
    assert abs(st['up']['dropped_loss'] - (up_sent - up['received'])) <= 3, (st['up'], up)
    assert st['up']['dropped_full'] == 0 and st['up']['send_errors'] == 0
    assert all(v['drops'] == 0 for v in st['socket_stats'].values())
    assert 29.9 <= st['up']['hold_ms']['p50'] <= 31.0


@needs_root
def test_bad_impairment_refused_and_nothing_changes(relay_tb):
    tb = relay_tb.setup()
    tb.set_impairment(delay_ms=20)
    with pytest.raises(ValueError, match='loss'):
        tb.set_impairment(loss=2.0)
    with pytest.raises(ValueError, match='unknown impairment'):
        tb.set_impairment(up={'latency_ms': 5})
    assert tb.relay_stats()['up']['configured']['delay_ms'] == 20
    plain = Testbed(name=NAME, relay=False)
    with pytest.raises(RuntimeError, match='relay=True'):
        plain.set_impairment(delay_ms=1)


@needs_root
def test_switching_between_relay_and_direct_link(relay_tb):
    """One name, rebuilt with and without the relay: each time the link works, nothing stays."""
    relay_tb.setup()
    direct = Testbed(name=NAME, rate_mbps=10.0, relay=False, robot_quota=None)
    direct.setup()
    assert not direct.exists()['link_ns'] and not _relay_pids(direct)
    sent, got, _ = probe_link(direct, 'up', count=50, interval_s=0.002)
    assert len(got) == 50
    relay_tb.setup()
    assert relay_tb.exists()['link_ns'] and len(_relay_pids(relay_tb)) == 1
    relay_tb.set_impairment(delay_ms=15)
    sent, got, _ = probe_link(relay_tb, 'up', count=50, interval_s=0.002)
    assert len(got) == 50 and min(got.values()) >= 15.0


@needs_root
def test_nodes_across_a_lossy_delayed_link_account_for_every_frame(relay_tb, tmp_path,
                                                                   installed_nodes):
    """Camera and edge across 5 % loss and 20 ms each way: every frame has one outcome."""
    from edgent_ros.evaluation.testbed_session import LOSSY_PROFILE, run_session
    tb = relay_tb
    tb.rate_mbps = 2.0
    tb.setup()
    tb.set_impairment(delay_ms=20, loss=0.05)
    frames = 30
    res = run_session(tb, camera={'exit_index': 5, 'split_index': 0, 'fps': 4.0,
                                  'max_frames': frames, 'deadline_ms': 1000.0,
                                  'result_timeout_s': 4.0, 'edge_timeout_s': 6.0,
                                  'max_in_flight': 2},
                      compute_slowdown=tbm.ROBOT_COMPUTE_SLOWDOWN, timeout_s=90.0,
                      logdir=tmp_path, profile=LOSSY_PROFILE)
    logs = {p.name: p.read_text()[-2000:] for p in Path(tmp_path).glob('*.log')}
    out = res['outcomes']
    assert sorted(o['sequence'] for o in out) == list(range(1, frames + 1)), logs
    kinds = [('edge' if o['finished_on'] == 0 else 'device') if o['status'] == 0
             else o['drop_reason'] for o in out]
    assert kinds.count('edge') >= frames // 2, (kinds, logs)
    assert set(kinds) <= {'edge', 'device', 'result_timeout', 'edge_timeout', 'link_busy'}, kinds
    edge = sorted(o['end_to_end_ms'] for o in out if o['status'] == 0 and o['finished_on'] == 0)
    assert edge[0] >= 40.0          # 20 ms each way: the delay is on every answered frame
    st = tb.relay_stats()
    assert st['up']['dropped_loss'] > 0 and st['up']['forwarded'] > 0
