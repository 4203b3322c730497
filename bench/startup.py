#!/usr/bin/env python3
"""
Start-up time and resident memory of the CLI and of each node (issue 15, item 5).

For each target a fresh process is started, repeated ``--repeats`` times:

* CLI (``edgent-ros --help``, ``plan``, ``info``): wall time to exit, peak RSS (``ru_maxrss``
  of the child), and whether torch was imported (``-X importtime`` lists it).
* Nodes (``camera_node``, ``edge_node``, ``planner_node``, ``viz_node``): seconds from exec until
  the node is ready (its start-up log line, written once model and artifacts are loaded; viz_node:
  in the ROS graph), then its RSS (``/proc/PID/status`` VmRSS) after ``--settle-s``.

Processes run from the temp folder, so the checkout in the working directory is not imported
instead of the install (or of ``--tree``).

``--tree DIR`` puts a source tree first on ``PYTHONPATH`` (its ``edgent_ros`` package shares the
name with the built install through ``extend_path``, which supplies ``edgent_ros.msg``), so the
same script measures an older checkout, e.g. the flat layout before the split::

    git worktree add /tmp/before <commit>
    python bench/startup.py --tree /tmp/before --label before --flat
    python bench/startup.py --label after

Results are appended to ``bench/results/startup.csv`` (one row per target and repeat) and a
median summary is printed. Run with the environment of ``scripts/env.sh`` and nothing else busy.
``--report`` measures nothing and prints BENCHMARKS' before/after table (``markdown``) of the
CSV.
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path
import select
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / 'bench' / 'results' / 'startup.csv'
FIELDS = ('label', 'target', 'repeat', 'seconds', 'rss_mb', 'torch_loaded')
CLI = {'--help': ['--help'],
       'plan': ['plan', '--bandwidth-mbps', '1', '--deadline-ms', '100'],
       'info': ['info']}
NODES = ('camera_node', 'edge_node', 'planner_node', 'viz_node')


def _env(tree: str) -> dict:
    env = dict(os.environ)
    if tree:
        env['PYTHONPATH'] = tree + os.pathsep + env.get('PYTHONPATH', '')
    env.setdefault('ROS_DOMAIN_ID', '91')
    env.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    return env


def time_cli(args: list, env: dict) -> tuple:
    """Return (seconds, peak RSS MB, torch imported) of one ``edgent-ros`` run."""
    t0 = time.monotonic()
    p = subprocess.Popen([sys.executable, '-X', 'importtime', '-m', 'edgent_ros.cli', *args],
                         env=env, cwd=tempfile.gettempdir(), stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    err = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)   # this child's own peak RSS (KB on Linux)
    dt = time.monotonic() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise RuntimeError(f'edgent-ros {" ".join(args)} failed: {err[-2000:]}')
    torch = any(line.split('|')[-1].strip() == 'torch' for line in err.splitlines())
    return dt, usage.ru_maxrss / 1024.0, torch


def _rss_mb(pid: int) -> float:
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024.0
    return float('nan')


def _torch_mapped(pid: int) -> bool:
    try:
        with open(f'/proc/{pid}/maps') as f:
            return any('libtorch' in line for line in f)
    except OSError:
        return False


def time_node(name: str, env: dict, flat: bool, listener, settle_s: float) -> tuple:
    """
    Return (seconds until ready, RSS MB after settling, torch loaded) of one node.

    Ready: the node logged its start-up line (``<name>: model ...``, the last line of its
    ``__init__``, after the model and artifacts are loaded); viz_node, which loads nothing and
    logs no such line, is ready when it is in the ROS graph.
    """
    entry = 'edgent_ros.entry' if flat else 'edgent_ros.nodes.entry'
    code = f'import sys\nfrom {entry} import {name}\nsys.exit({name}())'
    t0 = time.monotonic()
    p = subprocess.Popen([sys.executable, '-c', code], env=env, cwd=tempfile.gettempdir(),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        up = None
        while time.monotonic() - t0 < 120.0 and p.poll() is None:
            if name == 'viz_node':
                if name in listener.get_node_names():
                    up = time.monotonic() - t0
                    break
                time.sleep(0.02)
                continue
            ready, _, _ = select.select([p.stdout], [], [], 0.05)
            if ready and f'{name}: ' in p.stdout.readline():
                up = time.monotonic() - t0
                break
        if up is None:
            raise RuntimeError(f'{name} did not start (exit {p.poll()})')
        time.sleep(settle_s)
        return up, _rss_mb(p.pid), _torch_mapped(p.pid)
    finally:
        p.terminate()
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def plot(csv_path: Path, png: Path) -> Path:
    """Draw median start-up time and RSS per target, one bar per label, from the CSV."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    labels = list(dict.fromkeys(r['label'] for r in rows))
    targets = list(dict.fromkeys(r['target'] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    width = 0.8 / len(labels)
    for ax, col, title in ((axes[0], 'seconds', 'start-up (s): CLI to exit, node to ready'),
                           (axes[1], 'rss_mb', 'resident memory (MB)')):
        for i, label in enumerate(labels):
            med = [statistics.median(float(r[col]) for r in rows
                                     if r['label'] == label and r['target'] == t) for t in targets]
            xs = [j + (i - (len(labels) - 1) / 2) * width for j in range(len(targets))]
            ax.bar(xs, med, width, label=label)
        ax.set_xticks(range(len(targets)))
        ax.set_xticklabels([t.replace('edgent-ros ', '') for t in targets], rotation=30,
                           fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


def markdown(rows: list) -> str:
    """Return BENCHMARKS' table (section 10): medians per target, one column group per label."""
    labels = list(dict.fromkeys(r['label'] for r in rows))
    head = '| target |' + ''.join(f' {lb}: s | {lb}: MB | torch |' for lb in labels)
    out = [head, '|---' * (1 + 3 * len(labels)) + '|']
    for target in dict.fromkeys(r['target'] for r in rows):
        line = f'| `{target}` |' if target.startswith('edgent-ros') else f'| {target} |'
        for lb in labels:
            rs = [r for r in rows if r['label'] == lb and r['target'] == target]
            torch = 'yes' if any(int(r['torch_loaded']) for r in rs) else 'no'
            line += (f' {statistics.median(float(r["seconds"]) for r in rs):.2f} | '
                     f'{statistics.median(float(r["rss_mb"]) for r in rs):.0f} | {torch} |')
        out.append(line)
    return '\n'.join(out)


def main(argv=None) -> int:
    """Measure and append the rows; print medians."""
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument('--label', help='row label, e.g. before / after (required to measure)')
    ap.add_argument('--tree', default='', help='source tree to put first on PYTHONPATH')
    ap.add_argument('--flat', action='store_true', help='the tree has the flat layout '
                    '(edgent_ros.entry) of before the split')
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--settle-s', type=float, default=3.0)
    ap.add_argument('--out', type=Path, default=OUT)
    ap.add_argument('--report', action='store_true',
                    help='measure nothing: print the table of --out')
    args = ap.parse_args(argv)
    if args.report:
        with open(args.out, newline='') as f:
            print(markdown(list(csv.DictReader(f))))
        return 0
    if not args.label:
        ap.error('--label is required to measure')
    env = _env(args.tree)
    os.environ.update({k: env[k] for k in ('ROS_DOMAIN_ID', 'ROS_AUTOMATIC_DISCOVERY_RANGE')})
    import rclpy   # the listener shares the nodes' domain
    rclpy.init()
    listener = rclpy.create_node('startup_bench')
    rows = []
    try:
        for target, cli_args in CLI.items():
            for i in range(args.repeats):
                s, rss, torch = time_cli(cli_args, env)
                rows.append((args.label, f'edgent-ros {target}', i, s, rss, torch))
                print(f'{args.label} edgent-ros {target}: {s:.2f} s, {rss:.0f} MB, '
                      f'torch {torch}', flush=True)
        for name in NODES:
            for i in range(args.repeats):
                s, rss, torch = time_node(name, env, args.flat, listener, args.settle_s)
                rows.append((args.label, name, i, s, rss, torch))
                print(f'{args.label} {name}: in graph after {s:.2f} s, {rss:.0f} MB, '
                      f'torch {torch}', flush=True)
    finally:
        listener.destroy_node()
        rclpy.try_shutdown()
    new = not args.out.exists()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, 'a', newline='') as f:
        w = csv.writer(f)
        if new:
            w.writerow(FIELDS)
        for r in rows:
            w.writerow([r[0], r[1], r[2], f'{r[3]:.3f}', f'{r[4]:.1f}', int(r[5])])
    print(f'\n{"target":<22} {"median s":>9} {"median MB":>10} torch')
    for target in dict.fromkeys(r[1] for r in rows):
        rs = [r for r in rows if r[1] == target]
        print(f'{target:<22} {statistics.median(r[3] for r in rs):>9.2f} '
              f'{statistics.median(r[4] for r in rs):>10.0f} {any(r[5] for r in rs)}')
    print(f'plot: {plot(args.out, args.out.with_suffix(".png"))}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
