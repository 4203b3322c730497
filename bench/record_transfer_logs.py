"""
Record the camera's transfer log on loopback, quiet and with a CPU hog beside the edge (issue 17).

Edge, camera and planner run as processes on this host (no shaping: the loopback link of the
one-host demo), the planner models a robot 60x slower so every frame goes to the edge (exit 5,
split 0, 3 KB) and brings a passive sample. ``--hog edge``: after ``--quiet-s`` seconds one busy
loop starts and shares one core with every thread of the edge process; ``--hog all``: one busy
loop per core, nothing pinned. The camera writes every transfer sample to the CSV
(``camera_node`` parameter ``transfer_log``); ``core.link.replay_transfers`` replays it through
any estimator. The hog's start is the first line of ``<out>.meta.json``.

Run from the repository root in the ROS environment::

    source scripts/env.sh
    python bench/record_transfer_logs.py --out test/data/transfer_logs/loopback_edge_hog.csv \
        --hog edge
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import random
import signal
import subprocess
import sys
import time

from edgent_ros.offline.hosts import pin_threads

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / '.ros' / 'install' / 'edgent_ros' / 'lib' / 'edgent_ros'


def main() -> int:
    """Record one log; return the exit code."""
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    ap.add_argument('--out', type=Path, required=True, help='transfer log CSV (replaced)')
    ap.add_argument('--hog', choices=('none', 'edge', 'all'), default='none',
                    help='CPU hog: none, one busy loop on the edge\'s core, one per core')
    ap.add_argument('--quiet-s', type=float, default=15.0, help='seconds before the hog')
    ap.add_argument('--duration-s', type=float, default=75.0, help='seconds in all')
    args = ap.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.unlink(missing_ok=True)
    env = dict(os.environ, ROS_DOMAIN_ID=str(random.randint(100, 200)), PYTHONUNBUFFERED='1')
    procs, hogs = [], []

    def start(exe: str, *params: str) -> subprocess.Popen:
        argv = [str(LIB / exe), '--ros-args'] + [x for p in params for x in ('-p', p)]
        p = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
        procs.append(p)
        return p
    meta = {'hog': args.hog, 'quiet_s': args.quiet_s, 'duration_s': args.duration_s}
    try:
        edge = start('edge_node')
        start('camera_node', 'fps:=10.0', 'publish_frames:=false', 'robot_time_scale:=60.0',
              f'transfer_log:={args.out.resolve()}')
        start('planner_node', 'deadline_ms:=300.0', 'robot_time_scale:=60.0')
        t0 = time.monotonic()
        while not args.out.exists() and time.monotonic() - t0 < 60.0:
            time.sleep(0.5)
        if not args.out.exists():
            print('no transfer log after 60 s: did the nodes start?', file=sys.stderr)
            return 1
        time.sleep(args.quiet_s)
        meta['hog_start_monotonic_s'] = time.monotonic()
        if args.hog == 'edge':
            cpu = max(os.sched_getaffinity(0))
            hogs.append(subprocess.Popen([sys.executable, '-c', 'while True: pass']))
            os.sched_setaffinity(hogs[0].pid, {cpu})
            pin_threads(edge.pid, {cpu})
        elif args.hog == 'all':
            hogs += [subprocess.Popen([sys.executable, '-c', 'while True: pass'])
                     for _ in os.sched_getaffinity(0)]
        time.sleep(max(0.0, args.duration_s - args.quiet_s))
    finally:
        for h in hogs:
            h.kill()
            h.wait(5)
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGINT)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
    args.out.with_suffix('.meta.json').write_text(json.dumps(meta, indent=1) + '\n')
    rows = args.out.read_text().count('\n') - 1
    print(f'{args.out}: {rows} samples ({args.hog} hog from {args.quiet_s:g} s)')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
