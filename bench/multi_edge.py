"""
More than one edge (issue 20, item 4): capacity with 1 and 2 edges, and an edge killed and back.

Every point runs N ``camera_node`` processes (``robot1..robotN``, exit/split fixed so every frame
goes to an edge) and 1 or 2 ``edge_node`` processes, each serving every robot under its
``edge_name`` (``core.edges``); robot k's ``edges`` list is the edge list rotated by k. Isolated
on its own ROS_DOMAIN_ID with localhost discovery. Needs the built package
(``source scripts/env.sh``) and, for ``--edge-quota``, root and cgroup v1.

- **capacity**: each edge process runs under a cgroup v1 CPU quota (``--edge-quota``, a fraction
  of one core: an edge PC that is the bottleneck, since on one 2-core host a second edge process
  adds no CPU of its own otherwise); throughput (results/s), end-to-end p50/p95, drops by reason
  and the share each edge served, with 1 and with 2 edges, ``--reps`` times each, alternating.
- **failover**: 2 edges; ``edge_a`` is killed (SIGKILL: no goodbye on the DDS graph) at
  ``--kill-at`` s and started again at ``--restart-at`` s. Per robot that used edge_a: seconds
  from the kill to its first frame captured and answered by edge_b, the frames between (and how
  each ended), seconds from the restart to its first frame answered by edge_a again. Every
  robot's frames are checked: each produced frame has exactly one outcome.

Writes ``bench/results/multi_edge.json`` and ``multi_edge.png``;
``python bench/multi_edge.py --markdown`` prints the BENCHMARKS table from the JSON.
"""

import argparse
from collections import Counter
import json
import os
from pathlib import Path
import random
import signal
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'test'))
RESULTS = Path(__file__).resolve().parent / 'results'
EDGES = ('edge_a', 'edge_b')


def _cgroup_name(edge: str) -> str:
    return f'edgent_bench_{edge}'


def _start_edges(procs, names, robots, quota, tag=''):
    from edgent_ros.core.edges import check_edge_names
    from edgent_ros.offline.hosts import ensure_cgroup, move_pid
    for e in check_edge_names(names):
        p = procs.start('edge_node', name=f'{e}{tag}', ns=e, edge_name=e,
                        robot_namespaces=list(robots), max_queue=8, max_queue_ms=500.0)
        if quota:
            ensure_cgroup(_cgroup_name(e), quota)
            move_pid(p.pid, _cgroup_name(e))


def _start_cameras(procs, robots, edges, fps, edge_timeout_s):
    from edgent_ros.core.edges import rotated
    for k, r in enumerate(robots):
        procs.start('camera_node', name=f'camera_{r}', ns=r, edges=rotated(edges, k), fps=fps,
                    exit_index=5, split_index=0, max_in_flight=2, result_timeout_s=1.0,
                    edge_timeout_s=edge_timeout_s, publish_frames=False, threads=1)


def _outcomes(listener, robot):
    """Return [(arrival monotonic s, InferenceResult)] of ``robot`` so far."""
    with listener.lock:
        return list(listener.received[f'/{robot}/edgent/outcome'])


def _accounted(outs) -> dict:
    """Check each produced frame has one outcome (frames older than the in-flight window)."""
    seqs = sorted(o.sequence for _, o in outs)
    dup = len(seqs) - len(set(seqs))
    settled = [s for s in seqs if s <= seqs[-1] - 20] if seqs else []
    missing = (settled[-1] - settled[0] + 1 - len(settled)) if settled else 0
    return {'outcomes': len(seqs), 'duplicates': dup, 'missing': missing}


def capacity(robots: int, n_edges: int, fps: float, seconds: float, quota: float) -> dict:
    """Run one capacity point; return throughput, latency, drops and each edge's share."""
    from ros_helpers import Listener, Procs
    from edgent_ros.msg import InferenceResult
    from edgent_ros.nodes import qos
    names = [f'robot{i + 1}' for i in range(robots)]
    edges = list(EDGES[:n_edges])
    procs = Procs(Path(tempfile.mkdtemp(prefix='edgent-multi-edge-')))
    listener = Listener()
    try:
        for r in names:
            listener.listen(InferenceResult, f'/{r}/edgent/outcome', qos.RESULT)
        _start_edges(procs, edges, names, quota)
        _start_cameras(procs, names, edges, fps, 3.0)
        ok = listener.spin_until(lambda: all(len(listener.msgs(f'/{r}/edgent/outcome')) > 5
                                             for r in names), 120.0)
        if not ok:
            raise RuntimeError('not every robot got results within 120 s: '
                               + procs.log('camera_robot1')[-2000:])
        listener.spin_until(lambda: False, 3.0)   # settle: queues at their steady state
        t0 = time.monotonic()
        listener.spin_until(lambda: False, seconds)
        t1 = time.monotonic()
        got = [o for r in names for t, o in _outcomes(listener, r) if t0 <= t < t1]
        done = [o for o in got if o.status == InferenceResult.STATUS_OK]
        lat = np.array([o.end_to_end_ms for o in done]) if done else np.zeros(1)
        return {
            'robots': robots, 'edges': n_edges, 'fps_per_robot': fps, 'seconds': t1 - t0,
            'frames': len(got), 'results': len(done),
            'results_per_s': len(done) / (t1 - t0),
            'on_edge': dict(Counter(o.edge for o in done if o.finished_on == 0)),
            'drops': dict(Counter(o.drop_reason for o in got
                                  if o.status != InferenceResult.STATUS_OK)),
            'p50_ms': float(np.percentile(lat, 50)), 'p95_ms': float(np.percentile(lat, 95)),
        }
    finally:
        procs.stop_all()
        listener.close()


def failover(robots: int, fps: float, kill_at: float, restart_at: float, end_at: float,
             edge_timeout_s: float, quota: float) -> dict:
    """Kill edge_a at ``kill_at`` s, start it again at ``restart_at``; return what robots saw."""
    from ros_helpers import Listener, Procs
    from edgent_ros.msg import InferenceResult
    from edgent_ros.nodes import qos
    names = [f'robot{i + 1}' for i in range(robots)]
    procs = Procs(Path(tempfile.mkdtemp(prefix='edgent-failover-')))
    listener = Listener()
    try:
        for r in names:
            listener.listen(InferenceResult, f'/{r}/edgent/outcome', qos.RESULT)
        _start_edges(procs, EDGES, names, quota)
        _start_cameras(procs, names, list(EDGES), fps, edge_timeout_s)
        if not listener.spin_until(lambda: all(len(listener.msgs(f'/{r}/edgent/outcome')) > 5
                                               for r in names), 120.0):
            raise RuntimeError('not every robot got results within 120 s')
        t0 = time.monotonic()
        listener.spin_until(lambda: False, kill_at)
        procs.stop('edge_a', sig=signal.SIGKILL)
        t_kill = time.monotonic()
        listener.spin_until(lambda: False, restart_at - kill_at)
        _start_edges(procs, ['edge_a'], names, quota, tag='_restarted')
        t_restart = time.monotonic()
        listener.spin_until(lambda: False, end_at - restart_at)
        for r in names:
            procs.stop(f'camera_{r}')       # SIGINT: every frame on the link ends as shutdown
        listener.spin_until(lambda: False, 3.0)
        out = {'robots': robots, 'fps_per_robot': fps, 'edge_timeout_s': edge_timeout_s,
               'kill_at_s': kill_at, 'restart_at_s': restart_at, 'end_at_s': end_at,
               'per_robot': {}}
        for r in names:
            outs = _outcomes(listener, r)
            before = [o for t, o in outs if t0 <= t < t_kill and o.finished_on == 0
                      and o.status == InferenceResult.STATUS_OK]
            home = Counter(o.edge for o in before).most_common(1)[0][0] if before else ''
            row = {'home': home, **_accounted(outs),
                   'ends': dict(Counter(o.drop_reason or ('edge' if o.finished_on == 0
                                                          else 'device') for _, o in outs))}
            if home == 'edge_a':
                # frames captured after the kill, until the first one edge_b answered
                after = [(t, o) for t, o in outs if t >= t_kill]
                first_b = next(((t, o) for t, o in after if o.edge == 'edge_b'
                                and o.status == InferenceResult.STATUS_OK), None)
                if first_b is not None:
                    row['moved_after_s'] = first_b[0] - t_kill
                    between = [o for t, o in after if o.sequence < first_b[1].sequence
                               and t < first_b[0] + 2.0]
                    row['between'] = dict(Counter(
                        o.drop_reason or ('edge' if o.finished_on == 0 else 'device')
                        for o in between))
                back = next((t for t, o in outs if t >= t_restart and o.edge == 'edge_a'
                             and o.status == InferenceResult.STATUS_OK), None)
                if back is not None:
                    row['back_after_s'] = back - t_restart
            out['per_robot'][r] = row
        return out
    finally:
        procs.stop_all()
        listener.close()
        if quota:
            from edgent_ros.offline.hosts import remove_cgroup
            for e in EDGES:
                remove_cgroup(_cgroup_name(e), evict=True)


def plot(report: dict, path: Path) -> None:
    """Throughput and p95 with 1 and 2 edges (each repetition a dot); failover times."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, (a0, a1, a2) = plt.subplots(1, 3, figsize=(13, 4))
    for p in report['capacity']:
        x = p['edges']
        a0.plot([x], [p['results_per_s']], 'o', color='C0')
        a1.plot([x], [p['p95_ms']], 'o', color='C1')
    offered = report['robots'] * report['fps_per_robot']
    a0.axhline(offered, ls='--', color='gray', label=f'offered {offered:g} frames/s')
    a0.set(xlabel='edges', ylabel='results / s', xticks=[1, 2],
           title=f'{report["robots"]} robots, edges at {report["edge_quota"]:g} CPU each')
    a0.legend()
    a1.set(xlabel='edges', ylabel='end-to-end p95 (ms)', xticks=[1, 2], title='latency')
    moved, back = [], []
    for f in report['failover']:
        for row in f['per_robot'].values():
            if 'moved_after_s' in row:
                moved.append(row['moved_after_s'])
            if 'back_after_s' in row:
                back.append(row['back_after_s'])
    a2.plot(np.zeros(len(moved)), moved, 'o', label='kill -> first result from edge_b')
    a2.plot(np.ones(len(back)), back, 's', label='restart -> first result from edge_a')
    if report['failover']:
        a2.axhline(report['failover'][0]['edge_timeout_s'], ls='--', color='gray',
                   label='edge_timeout_s')
    a2.set(xticks=[0, 1], xticklabels=['failover', 'back'], ylabel='s',
           title='edge_a killed and restarted')
    a2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def markdown(report: dict) -> str:
    """Return the BENCHMARKS tables for ``report``."""
    lines = ['| edges | rep | results/s | offered/s | p50 / p95 ms | drops (reason) | '
             'served by |', '|---|---|---|---|---|---|---|']
    reps = Counter()
    for p in report['capacity']:
        reps[p['edges']] += 1
        drops = ', '.join(f'{v} {k}' for k, v in sorted(p['drops'].items())) or '0'
        served = ', '.join(f'{k} {v}' for k, v in sorted(p['on_edge'].items()))
        lines.append(f'| {p["edges"]} | {reps[p["edges"]]} | {p["results_per_s"]:.1f} | '
                     f'{p["robots"] * p["fps_per_robot"]:g} | {p["p50_ms"]:.0f} / '
                     f'{p["p95_ms"]:.0f} | {drops} | {served} |')
    lines += ['', '| run | robot | home | kill -> on edge_b (s) | frames between: how they '
              'ended | restart -> back on edge_a (s) | outcomes / duplicates / missing |',
              '|---|---|---|---|---|---|---|']
    for i, f in enumerate(report['failover'], 1):
        for r, row in f['per_robot'].items():
            between = ', '.join(f'{v} {k}' for k, v in sorted(row.get('between', {}).items()))
            moved = f'{row["moved_after_s"]:.2f}' if 'moved_after_s' in row else '-'
            back = f'{row["back_after_s"]:.2f}' if 'back_after_s' in row else '-'
            lines.append(f'| {i} | {r} | {row["home"]} | {moved} | {between or "-"} | {back} | '
                         f'{row["outcomes"]} / {row["duplicates"]} / {row["missing"]} |')
    return '\n'.join(lines)


def main(argv=None) -> int:
    """Run the capacity points and the failover runs; write JSON and PNG."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument('--robots', type=int, default=8)
    ap.add_argument('--fps', type=float, default=20.0, help='frames/s per robot')
    ap.add_argument('--seconds', type=float, default=20.0, help='measured time per point')
    ap.add_argument('--edge-quota', type=float, default=0.3,
                    help='CPU quota of each edge process (fraction of one core; 0 = none)')
    ap.add_argument('--reps', type=int, default=2)
    ap.add_argument('--failover-reps', type=int, default=2)
    ap.add_argument('--failover-fps', type=float, default=10.0)
    ap.add_argument('--edge-timeout-s', type=float, default=1.0)
    ap.add_argument('--kill-at', type=float, default=10.0)
    ap.add_argument('--restart-at', type=float, default=25.0)
    ap.add_argument('--end-at', type=float, default=40.0)
    ap.add_argument('--out', type=Path, default=RESULTS / 'multi_edge.json')
    ap.add_argument('--markdown', action='store_true', help='print the tables of --out and stop')
    args = ap.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(args.out.read_text())))
        return 0
    os.environ.setdefault('ROS_DOMAIN_ID', str(random.randint(100, 199)))
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    report = {'robots': args.robots, 'fps_per_robot': args.fps, 'edge_quota': args.edge_quota,
              'command': 'python bench/multi_edge.py ' + ' '.join(argv or sys.argv[1:]),
              'capacity': [], 'failover': []}
    for rep in range(args.reps):
        for n in ((1, 2) if rep % 2 == 0 else (2, 1)):   # alternate the order
            print(f'capacity: {args.robots} robots x {args.fps:g} fps, {n} edge(s), rep '
                  f'{rep + 1}/{args.reps} ...', file=sys.stderr, flush=True)
            p = capacity(args.robots, n, args.fps, args.seconds, args.edge_quota)
            print(f'  {p["results_per_s"]:.1f} results/s, p95 {p["p95_ms"]:.0f} ms, drops '
                  f'{p["drops"]}', file=sys.stderr, flush=True)
            report['capacity'].append(p)
    for rep in range(args.failover_reps):
        print(f'failover {rep + 1}/{args.failover_reps}: kill edge_a at {args.kill_at:g} s, '
              f'restart at {args.restart_at:g} s ...', file=sys.stderr, flush=True)
        f = failover(args.robots, args.failover_fps, args.kill_at, args.restart_at, args.end_at,
                     args.edge_timeout_s, args.edge_quota)
        for r, row in f['per_robot'].items():
            print(f'  {r}: {row}', file=sys.stderr, flush=True)
        report['failover'].append(f)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + '\n')
    plot(report, args.out.with_suffix('.png'))
    print(markdown(report))
    print(f'wrote {args.out} and {args.out.with_suffix(".png")}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
