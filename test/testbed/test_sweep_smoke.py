"""
Smoke version of the evaluation sweep (issue 6).

A few cells, a few frames each, on the real testbed with the real nodes. The full sweep is
``edgent-ros sweep run`` (a benchmark, not a test).
"""

import os

import pytest

from edgent_ros.evaluation import testbed as tbm
from edgent_ros.evaluation.sweep import CSV_FIELDS, read_done, read_rows

REASON = tbm.unavailable_reason()
pytestmark = pytest.mark.skipif(bool(REASON), reason=REASON or 'testbed available')
BRANCH_LEN = {1: 10, 2: 10, 3: 12, 4: 13, 5: 20}


def test_smoke_sweep_and_resume(tmp_path, installed_nodes):
    from edgent_ros.evaluation.sweep_session import run_sweep
    out = tmp_path / 'sweep.csv'
    pols = ['device-only', 'edge-only', 'edgent', 'true-bandwidth', 'edgent+enc']
    kw = dict(bandwidths=[0.2, 5.0], deadlines=[400.0], policies=pols, frames=3,
              name=f'sw{os.getpid():x}'[:8], logdir=tmp_path / 'logs')
    assert run_sweep(out, **kw) == 10
    rows = read_rows(out)
    logs = {p.name: p.read_text()[-1500:] for p in (tmp_path / 'logs').rglob('*.log')}
    # 10 live cells + 2 oracle cells computed from their frames
    assert len(rows) == 12 and set(CSV_FIELDS) <= set(rows[0])
    by = {(r['policy'], r['bandwidth_mbps']): r for r in rows}
    assert (tmp_path / 'sweep_frames.csv').exists()
    for r in rows:
        # the oracle's row pools every frame measured of its configuration at that bandwidth
        assert (r['frames'] == 3 or r['policy'] == 'oracle') and r['classified'] >= 2, (r, logs)
        assert r['p50_ms'] > 0 and r['p50_ms'] <= r['p95_ms'] <= r['p99_ms']
    for bw in (0.2, 5.0):
        d = by[('device-only', bw)]
        assert d['split'] == BRANCH_LEN[int(d['exit'])] and d['uplink_ms'] is None
        e = by[('edge-only', bw)]
        assert (e['exit'], e['split']) == (5, 0) and e['uplink_ms'] > 0
    # 3 KB at 0.2 Mbit/s take 123 ms at bytes/rate; the tbf bucket (1600 B) lets the first
    # part of a frame through at once after an idle gap, so > 55 ms, and far more than at 5 Mbit/s
    slow, fast = by[('edge-only', 0.2)]['uplink_ms'], by[('edge-only', 5.0)]['uplink_ms']
    assert slow > 55.0 and slow > 5 * fast, (slow, fast)
    # a fast link: Edgent, the true-bandwidth planner and the oracle offload the final exit
    # and meet the deadline
    for p in ('edgent', 'true-bandwidth', 'oracle'):
        r = by[(p, 5.0)]
        assert (r['exit'], r['split']) == (5, 0) and r['deadline_met'] == 1.0, (r, logs)
    # with encodings allowed, the final exit's frame crosses compressed (PNG: lossless and
    # fewer bytes, so faster at the same accuracy) and still meets the deadline
    for bw in (0.2, 5.0):
        r = by[('edgent+enc', bw)]
        assert (r['exit'], r['split'], r['encoding']) == (5, 0, 'png'), (r, logs)
        assert r['deadline_met'] == 1.0, (r, logs)
    assert by[('edgent+enc', 0.2)]['uplink_ms'] < slow
    # resumable: a second run finds every cell done and changes nothing
    before = out.read_text()
    assert run_sweep(out, **kw) == 0 and out.read_text() == before
    assert len(read_done(out)) == 12
