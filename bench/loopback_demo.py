"""
The one-host demo (``ros2 launch edgent_ros demo.launch.py``) on loopback: estimates, decisions.

Runs the demo launch (two robots, one edge, default parameters) for ``--duration-s`` seconds per
condition and records ``/robot{1,2}/edgent/link_quality``, ``/robot1/edgent/decision`` and
``/robot1/edgent/outcome`` with ``edgent-ros record``. Conditions: ``quiet``; ``edge-hog``: a
busy loop shares one core with every thread of the edge process; ``all-hog``: one busy loop per
core. First the path's capacity for tensor messages is measured on its own
(``loopback_capacity.dds_train``: five trains of 20 back-to-back 8 MiB messages between two
processes, the median). Reported per condition: LinkQuality updates, the share within 2x of
that capacity (issue 17 item 1) and of the quiet run's median estimate, the lowest and median
estimate, the median round trip, how many times robot1's configuration changed, and frames on
time. Writes ``bench/results/loopback_demo.json``::

    source scripts/env.sh
    python bench/loopback_demo.py            # ~4 min
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import random
import signal
import statistics
import subprocess
import sys
import time

from edgent_ros.offline.hosts import pin_threads

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / 'bench' / 'results' / 'loopback_demo.json'
TOPICS = ['/robot1/edgent/link_quality', '/robot2/edgent/link_quality',
          '/robot1/edgent/decision', '/robot1/edgent/outcome']


def _edge_pid(launch_pid: int) -> int:
    """Return the pid of the edge_node started by the launch (by command line)."""
    for _ in range(60):
        for d in os.listdir('/proc'):
            if d.isdigit():
                try:
                    cmd = Path(f'/proc/{d}/cmdline').read_bytes().split(b'\0')
                except OSError:
                    continue
                if any(c.endswith(b'/edge_node') for c in cmd) and \
                        os.getsid(int(d)) == os.getsid(launch_pid):
                    return int(d)
        time.sleep(0.5)
    raise RuntimeError('edge_node of the demo launch not found')


def run(condition: str, duration_s: float, bag: Path) -> None:
    """Run the demo under ``condition`` and record ``bag``."""
    env = dict(os.environ, ROS_DOMAIN_ID=str(random.randint(100, 200)))
    launch = subprocess.Popen(['ros2', 'launch', 'edgent_ros', 'demo.launch.py'], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    hogs = []
    try:
        time.sleep(8.0)
        if condition == 'edge-hog':
            cpu = max(os.sched_getaffinity(0))
            hogs.append(subprocess.Popen([sys.executable, '-c', 'while True: pass']))
            os.sched_setaffinity(hogs[0].pid, {cpu})
            pin_threads(_edge_pid(launch.pid), {cpu})
        elif condition == 'all-hog':
            hogs += [subprocess.Popen([sys.executable, '-c', 'while True: pass'])
                     for _ in os.sched_getaffinity(0)]
        subprocess.run(['edgent-ros', 'record', '--out', str(bag), '--duration',
                        str(duration_s), '--topics', *TOPICS], env=env, check=True,
                       stdout=subprocess.DEVNULL)
    finally:
        for h in hogs:
            h.kill()
            h.wait(5)
        os.killpg(launch.pid, signal.SIGINT)
        try:
            launch.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(launch.pid, signal.SIGKILL)
            launch.wait(5)


def read(bag: Path) -> dict:
    """Return the recorded estimates, robot1's configurations and outcomes."""
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import get_types_from_msg, get_typestore, Stores
    ts = get_typestore(Stores.ROS2_JAZZY)
    for f in (ROOT / 'msg').glob('*.msg'):
        ts.register(get_types_from_msg(f.read_text(), f'edgent_ros/msg/{f.stem}'))
    est, rtt, configs, met = [], [], [], []
    with AnyReader([bag], default_typestore=ts) as r:
        for c, _, raw in r.messages():
            m = r.deserialize(raw, c.msgtype)
            if c.topic.endswith('link_quality') and m.uplink_bandwidth_bps > 0:
                est.append(m.uplink_bandwidth_bps)
                if m.rtt_ms >= 0:
                    rtt.append(m.rtt_ms)
            elif c.topic.endswith('decision'):
                configs.append((m.exit_index, m.split_index))
            elif c.topic.endswith('outcome'):
                met.append(bool(m.deadline_met))
    return {'estimates': est, 'rtt_ms': rtt, 'configs': configs, 'met': met}


CONDITIONS = {'quiet': 'quiet', 'edge-hog': 'busy loop on the edge\'s core',
              'all-hog': 'one busy loop per core'}


def markdown(body: dict) -> str:
    """Return the BENCHMARKS table of a ``loopback_demo.json``."""
    cap = body['capacity_gbps']
    trains = ', '.join(f'{t["gbps"]:.2f}' for t in body['capacity_trains'])
    lines = [f'Capacity of the path for tensor messages: {cap:.2f} Gbit/s (median of trains at '
             f'{trains} Gbit/s).', '',
             '| condition | estimates | within 2× of the capacity | lowest (Gbit/s) | median '
             '(Gbit/s) | round trip (ms, median) | configuration changes | frames on time |',
             '|---|---|---|---|---|---|---|---|']
    for cond, label in CONDITIONS.items():
        d = body[cond]
        lines.append(f'| {label} | {d["updates"]} | {100 * d["within_2x_capacity"]:.1f} % | '
                     f'{d["min_mbps"] / 1e3:.2f} | {d["median_mbps"] / 1e3:.2f} | '
                     f'{d["rtt_ms_median"]:.2f} | {d["configuration_changes"]} | '
                     f'{round(d["on_time"] * d["frames"])} / {d["frames"]} |')
    return '\n'.join(lines)


def main() -> int:
    """Measure the path's capacity, run the three conditions and write the summary."""
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    ap.add_argument('--duration-s', type=float, default=60.0)
    ap.add_argument('--out', type=Path, default=OUT)
    ap.add_argument('--report', action='store_true', help='only print the table of --out')
    args = ap.parse_args()
    if args.report:
        print(markdown(json.loads(args.out.read_text())))
        return 0
    work = Path(f'/tmp/edgent-loopback-demo-{int(time.time())}')
    work.mkdir(parents=True)
    sys.path.insert(0, str(ROOT / 'bench'))
    from loopback_capacity import dds_train   # noqa: E402 (a bench script beside this one)
    print('loopback demo: capacity of the path (5 trains)', file=sys.stderr)
    trains = [dds_train(20, 8 * 1024 * 1024, 30.0) for _ in range(5)]
    capacity = statistics.median(t['gbps'] for t in trains) * 1e9
    data = {}
    for cond in ('quiet', 'edge-hog', 'all-hog'):
        print(f'loopback demo: {cond} ({args.duration_s:g} s)', file=sys.stderr)
        run(cond, args.duration_s, work / cond)
        data[cond] = read(work / cond)
    ref = statistics.median(data['quiet']['estimates'])
    body = {'capacity_gbps': round(capacity / 1e9, 3), 'capacity_trains': trains,
            'reference_mbps': round(ref / 1e6, 3), 'duration_s': args.duration_s}
    for cond, d in data.items():
        e = d['estimates']
        changes = sum(1 for a, b in zip(d['configs'], d['configs'][1:]) if a != b)
        body[cond] = {'updates': len(e),
                      'within_2x_capacity': round(sum(1 for x in e if capacity / 2 <= x
                                                      <= 2 * capacity) / len(e), 4),
                      'within_2x': round(sum(1 for x in e if ref / 2 <= x <= 2 * ref) / len(e),
                                         4),
                      'min_mbps': round(min(e) / 1e6, 3),
                      'median_mbps': round(statistics.median(e) / 1e6, 3),
                      'rtt_ms_median': round(statistics.median(d['rtt_ms']), 3)
                      if d['rtt_ms'] else None,
                      'decisions': len(d['configs']), 'configuration_changes': changes,
                      'configurations': sorted({f'{x}/{y}' for x, y in d['configs']}),
                      'frames': len(d['met']),
                      'on_time': round(sum(d['met']) / len(d['met']), 4) if d['met'] else None}
    args.out.write_text(json.dumps(body, indent=1) + '\n')
    print(json.dumps(body, indent=1))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
