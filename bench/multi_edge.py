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
import math
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


def _start_edges(procs, names, robots, quota, tag='') -> float:
    """
    Start the edges ``names``; once each is serving, move it under its CPU quota.

    Start-up (imports, weights) runs unconfined, as on an edge PC of its own; returns the
    seconds until the last one was serving.
    """
    from edgent_ros.core.edges import check_edge_names
    from edgent_ros.offline.hosts import ensure_cgroup, move_pid
    t0 = time.monotonic()
    started = {}
    for e in check_edge_names(names):
        started[e] = procs.start('edge_node', name=f'{e}{tag}', ns=e, edge_name=e,
                                 robot_namespaces=list(robots), max_queue=8,
                                 max_queue_ms=500.0)
    for e, p in started.items():
        while 'serving' not in procs.log(f'{e}{tag}'):
            if p.poll() is not None or time.monotonic() - t0 > 120.0:
                raise RuntimeError(f'{e} did not start: ' + procs.log(f'{e}{tag}')[-2000:])
            time.sleep(0.1)
        if quota:
            ensure_cgroup(_cgroup_name(e), quota)
            move_pid(p.pid, _cgroup_name(e))
    return time.monotonic() - t0


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
        t_restart = time.monotonic()
        # the listener keeps spinning while the edge starts: outcomes are timed as they come
        ready = {}

        def serving():
            if 'at' not in ready and 'serving' in procs.log('edge_a_restarted'):
                ready['at'] = time.monotonic()
            return 'at' in ready
        procs.start('edge_node', name='edge_a_restarted', ns='edge_a', edge_name='edge_a',
                    robot_namespaces=names, max_queue=8, max_queue_ms=500.0)
        listener.spin_until(serving, 120.0)
        if quota:
            from edgent_ros.offline.hosts import ensure_cgroup, move_pid
            ensure_cgroup(_cgroup_name('edge_a'), quota)
            move_pid(procs.procs['edge_a_restarted'][0].pid, _cgroup_name('edge_a'))
        left = end_at - restart_at - (time.monotonic() - t_restart)
        listener.spin_until(lambda: False, max(0.0, left))
        # SIGINT to every camera at once (each ends its frames on the link as shutdown drops),
        # the listener spinning meanwhile: outcomes beyond its depth-50 history would be lost
        # to the measurement if the cameras were stopped one by one without spinning
        cams = [procs.procs[f'camera_{r}'][0] for r in names]
        for p in cams:
            os.killpg(p.pid, signal.SIGINT)
        listener.spin_until(lambda: all(p.poll() is not None for p in cams), 30.0)
        listener.spin_until(lambda: False, 3.0)
        out = {'robots': robots, 'fps_per_robot': fps, 'edge_timeout_s': edge_timeout_s,
               'kill_at_s': kill_at, 'restart_at_s': restart_at, 'end_at_s': end_at,
               'restarted_edge_serving_after_s': ready.get('at', math.nan) - t_restart,
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
                last_a = max((t for t, o in outs if t < t_kill and o.edge == 'edge_a'),
                             default=math.nan)
                if first_b is not None:
                    row['moved_after_s'] = first_b[0] - t_kill
                    # from edge_a's last answer: what the camera's watchdog counts
                    row['moved_after_last_answer_s'] = first_b[0] - last_a
                    between = [o for t, o in after if o.sequence < first_b[1].sequence
                               and t < first_b[0] + 2.0]
                    row['between'] = dict(Counter(
                        o.drop_reason or ('edge' if o.finished_on == 0 else 'device')
                        for o in between))
                back = next((t for t, o in outs if t >= t_restart and o.edge == 'edge_a'
                             and o.status == InferenceResult.STATUS_OK), None)
                if back is not None:
                    row['back_after_s'] = back - t_restart
                    row['back_after_serving_s'] = back - ready.get('at', math.nan)
            out['per_robot'][r] = row
        return out
    finally:
        procs.stop_all()
        listener.close()


def plot(report: dict, path: Path) -> None:
    """Throughput and p95 with 1 and 2 edges (each repetition a dot); failover times."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, (a0, a1, a2) = plt.subplots(1, 3, figsize=(13, 4))
    for k, fps in enumerate(report['fps_per_robot']):
        pts = [p for p in report['capacity'] if p['fps_per_robot'] == fps]
        offered = report['robots'] * fps
        a0.plot([p['edges'] for p in pts], [p['results_per_s'] for p in pts], 'o',
                color=f'C{k}', label=f'offered {offered:g} frames/s')
        a0.axhline(offered, ls='--', color=f'C{k}', lw=0.8)
        a1.plot([p['edges'] for p in pts], [p['p95_ms'] for p in pts], 'o', color=f'C{k}')
    a0.set(xlabel='edges', ylabel='results / s', xticks=[1, 2],
           title=f'{report["robots"]} robots, edges at {report["edge_quota"]:g} CPU each')
    a0.legend()
    a1.set(xlabel='edges', ylabel='end-to-end p95 (ms)', xticks=[1, 2], title='latency')
    moved, back = [], []
    for f in report['failover']:
        for row in f['per_robot'].values():
            if 'moved_after_s' in row:
                moved.append(row['moved_after_s'])
            if 'back_after_serving_s' in row:
                back.append(row['back_after_serving_s'])
    a2.plot(np.zeros(len(moved)), moved, 'o', label='kill -> first result from edge_b')
    a2.plot(np.ones(len(back)), back, 's', label='edge_a serving again -> first result from it')
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
    lines = ['| offered frames/s | edges | rep | results/s | p50 / p95 ms | drops (reason) | '
             'results served by |', '|---|---|---|---|---|---|---|']
    reps = Counter()
    rows = sorted(report['capacity'], key=lambda p: (p['fps_per_robot'], p['edges']))
    for p in rows:
        key = (p['fps_per_robot'], p['edges'])
        reps[key] += 1
        drops = ', '.join(f'{v} {k}' for k, v in sorted(p['drops'].items())) or '0'
        served = ', '.join(f'{k} {v}' for k, v in sorted(p['on_edge'].items()))
        lines.append(f'| {p["robots"] * p["fps_per_robot"]:g} | {p["edges"]} | {reps[key]} | '
                     f'{p["results_per_s"]:.1f} | {p["p50_ms"]:.0f} / {p["p95_ms"]:.0f} | '
                     f'{drops} | {served} |')
    lines += ['', '| run | robot | home | kill -> first result from edge_b (s) (from edge_a\'s '
              'last answer) | frames between: how they '
              'ended | restart -> back on edge_a (s): total = edge start-up + back | outcomes / '
              'duplicates / missing |', '|---|---|---|---|---|---|---|']
    for i, f in enumerate(report['failover'], 1):
        for r, row in f['per_robot'].items():
            between = ', '.join(f'{v} {k}' for k, v in sorted(row.get('between', {}).items()))
            moved = (f'{row["moved_after_s"]:.2f} ({row["moved_after_last_answer_s"]:.2f})'
                     if 'moved_after_s' in row else '-')
            back = (f'{row["back_after_s"]:.2f} = {f["restarted_edge_serving_after_s"]:.2f} + '
                    f'{row["back_after_serving_s"]:.2f}' if 'back_after_s' in row else '-')
            lines.append(f'| {i} | {r} | {row["home"]} | {moved} | {between or "-"} | {back} | '
                         f'{row["outcomes"]} / {row["duplicates"]} / {row["missing"]} |')
    return '\n'.join(lines)


def main(argv=None) -> int:
    """Run the capacity points and the failover runs; write JSON and PNG."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument('--robots', type=int, default=8)
    ap.add_argument('--fps', type=float, nargs='+', default=[10.0, 20.0],
                    help='frames/s per robot (one capacity series per value)')
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
              'failover_fps_per_robot': args.failover_fps, 'seconds': args.seconds,
              'command': 'python bench/multi_edge.py ' + ' '.join(argv or sys.argv[1:]),
              'capacity': [], 'failover': []}
    try:
        _run_all(args, report)
    finally:
        from edgent_ros.offline.hosts import remove_cgroup
        for e in EDGES:
            remove_cgroup(_cgroup_name(e), evict=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + '\n')
    plot(report, args.out.with_suffix('.png'))
    print(markdown(report))
    print(f'wrote {args.out} and {args.out.with_suffix(".png")}')
    return 0


def _capacity_point(args, report: dict, rep: int, fps: float, n: int) -> None:
    """Run one capacity point into ``report``, with progress on stderr."""
    print(f'capacity: {args.robots} robots x {fps:g} fps, {n} edge(s), rep {rep + 1}/'
          f'{args.reps} ...', file=sys.stderr, flush=True)
    p = capacity(args.robots, n, fps, args.seconds, args.edge_quota)
    print(f'  {p["results_per_s"]:.1f} results/s, p95 {p["p95_ms"]:.0f} ms, drops '
          f'{p["drops"]}', file=sys.stderr, flush=True)
    report['capacity'].append(p)


def _run_all(args, report: dict) -> None:
    """Run the capacity points, then the failover runs, into ``report``."""
    for rep in range(args.reps):
        for fps in args.fps:
            for n in ((1, 2) if rep % 2 == 0 else (2, 1)):   # alternate the order
                _capacity_point(args, report, rep, fps, n)
    for rep in range(args.failover_reps):
        print(f'failover {rep + 1}/{args.failover_reps}: kill edge_a at {args.kill_at:g} s, '
              f'restart at {args.restart_at:g} s ...', file=sys.stderr, flush=True)
        f = failover(args.robots, args.failover_fps, args.kill_at, args.restart_at, args.end_at,
                     args.edge_timeout_s, args.edge_quota)
        for r, row in f['per_robot'].items():
            print(f'  {r}: {row}', file=sys.stderr, flush=True)
        report['failover'].append(f)


if __name__ == '__main__':
    raise SystemExit(main())
