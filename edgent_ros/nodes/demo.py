"""
``edgent-ros demo``: edge_node, planner_node and camera_node as three processes over DDS.

The camera runs the bundled CIFAR-10 sample; this process listens to ``edgent/outcome`` and
prints one line per frame (truth, prediction, exit/split, latency breakdown, deadline) and a
summary with the accuracy it measured per exit. The run is isolated on its own ROS_DOMAIN_ID
(unless one is set) with localhost-only discovery.
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict
import os
from pathlib import Path
import random
import signal
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

import numpy as np

from ..core.arch import CLASSES
from ..core.artifacts import ACCURACY_FILE, ACCURACY_FORMAT, ARTIFACT_DIR, load_json


def _executable(name: str) -> str:
    for p in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep):
        exe = Path(p) / 'lib' / 'edgent_ros' / name
        if p and exe.exists():
            return str(exe)
    raise FileNotFoundError(f'{name} not found under AMENT_PREFIX_PATH/lib/edgent_ros: run '
                            'scripts/setup.sh and source scripts/env.sh (or .venv/bin/edgent-ros)')


def _start(name: str, params: Dict[str, object], logdir: Path) -> subprocess.Popen:
    args = [_executable(name), '--ros-args']
    for k, v in params.items():
        v = ('true' if v else 'false') if isinstance(v, bool) else v
        args += ['-p', f'{k}:={v}']
    log = open(logdir / f'{name}.log', 'w')
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env=dict(os.environ, PYTHONUNBUFFERED='1'))


def _stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGINT)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(5)


def run_demo(args: argparse.Namespace) -> int:
    """Run the demo; return 0 when every frame got an outcome."""
    os.environ.setdefault('ROS_DOMAIN_ID', str(random.randint(100, 199)))
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from . import qos
    from ..msg import ExitSplitDecision, InferenceResult

    table = load_json(ARTIFACT_DIR / ACCURACY_FILE, ACCURACY_FORMAT)
    epochs = table.get('train_config', {}).get('epochs', 0)
    logdir = Path(tempfile.mkdtemp(prefix='edgent-demo-'))
    fixed = args.exit is not None or args.split is not None
    print(f'edgent_ros demo: model {table["model_id"]} (trained {epochs} epochs; test top-1 per '
          f'exit {[round(100 * r["top1"], 1) for r in table["exits"]]} %)')
    print(f'  ROS_DOMAIN_ID={os.environ["ROS_DOMAIN_ID"]}, {args.frames} frames from '
          f'"{args.source}" at {args.fps:g} fps, deadline {args.deadline_ms:g} ms, '
          + (f'fixed exit {args.exit} split {args.split}' if fixed else f'planner policy '
             f'{args.policy}') + f'; node logs in {logdir}')
    procs: List[subprocess.Popen] = []
    rclpy.init()
    node = rclpy.create_node('edgent_demo')
    outcomes: List = []
    decisions: List = []
    node.create_subscription(InferenceResult, 'edgent/outcome', outcomes.append, qos.RESULT)
    node.create_subscription(ExitSplitDecision, 'edgent/decision', decisions.append,
                             qos.DECISION)
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    printed = 0
    try:
        procs.append(_start('edge_node', {}, logdir))
        if not fixed:
            procs.append(_start('planner_node', {'deadline_ms': float(args.deadline_ms),
                                                 'policy': args.policy}, logdir))
        cam = {'max_frames': args.frames, 'fps': float(args.fps), 'loop': True,
               'source': args.source, 'deadline_ms': float(args.deadline_ms),
               'exit_when_done': True,
               # edgent/outcome readers to wait for: this process, and the planner's
               # calibration (one reader seen could be the planner's, and the first
               # frames would be lost to this process's discovery)
               'wait_for_subscribers': 1 if fixed else 2, 'wait_for_edge_s': 30.0}
        if args.exit is not None:
            cam['exit_index'] = args.exit
        if args.split is not None:
            cam['split_index'] = args.split
        procs.append(_start('camera_node', cam, logdir))
        # the camera may wait wait_for_edge_s for discovery after its own start-up (torch
        # import, model load: seconds on a loaded 2-core machine): bound the run past both
        end = time.monotonic() + 30 + float(cam['wait_for_edge_s']) + 3 * args.frames / args.fps
        n_dec = 0
        planner_end = None
        while time.monotonic() < end:
            if len(outcomes) >= args.frames:
                # the planner's decision is transient local, but its writer may match this
                # process's reader after the camera's frames are done (discovery of each pair
                # of the four processes is independent; seconds on a loaded 2-core machine):
                # wait a bounded while for it, so the decision in force is always shown
                if fixed or decisions:
                    break
                planner_end = planner_end or time.monotonic() + 15.0
                if time.monotonic() > planner_end:
                    print('  planner: no decision received on edgent/decision (see the '
                          'planner_node log)')
                    break
            ex.spin_once(timeout_sec=0.05)
            while n_dec < len(decisions):
                d = decisions[n_dec]
                n_dec += 1
                print(f'  planner: exit {d.exit_index} split {d.split_index} at '
                      f'{d.bandwidth_bps / 1e6:.1f} Mbit/s, predicted {d.predicted_total_ms:.1f}'
                      f' ms, expected top-1 {100 * d.expected_accuracy:.1f} %'
                      f'{"" if d.feasible else " (INFEASIBLE)"}')
            while printed < len(outcomes) and not args.quiet:
                printed += 1
                print(f'  {frame_line(outcomes[printed - 1])}')
    except KeyboardInterrupt:
        pass
    finally:
        for p in reversed(procs):
            _stop(p)
        ex.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    rc = _summary(outcomes, args.frames)
    if rc:
        show_logs(logdir)
    return rc


def frame_line(o) -> str:
    """
    Return one frame's line: truth, prediction, exit/split, latency breakdown (ms), deadline.

    ``o``: an ``edgent/outcome`` message, or anything with its field names as attributes (the
    testbed demo's recorded outcomes); status 0 is ``InferenceResult.STATUS_OK``.
    """
    if o.status != 0:
        return f'frame {o.sequence:4d}  dropped: {o.drop_reason}'
    truth = CLASSES[o.true_class_id] if 0 <= o.true_class_id < len(CLASSES) else '?'
    label = getattr(o, 'label', '') or (CLASSES[o.class_id] if 0 <= o.class_id < len(CLASSES)
                                        else '?')
    return (f'frame {o.sequence:4d}  true {truth:<10} pred {label:<10} ({o.confidence:.2f}) '
            f'{"ok " if o.class_id == o.true_class_id else "BAD"}'
            f'  exit {o.exit_index} split {o.split_index:2d}  '
            f'e2e {o.end_to_end_ms:7.1f} ms (device {o.device_ms:.1f} + link '
            f'{o.uplink_ms:.1f} + edge {o.edge_ms + o.edge_queue_ms:.1f})  '
            f'{"met" if o.deadline_met else "MISSED"}')


def show_logs(logdir: Path, lines: int = 15) -> None:
    """Print the tail of each node's log: a run that lost frames says why."""
    for log in sorted(logdir.glob('*.log')):
        tail = log.read_text(errors='replace').splitlines()[-lines:]
        print(f'--- last {len(tail)} lines of {log}:')
        for line in tail:
            print(f'  {line}')
    sys.stdout.flush()


def _summary(outcomes: List, frames: int) -> int:
    from ..msg import InferenceResult
    ok = [o for o in outcomes if o.status == InferenceResult.STATUS_OK]
    drops = Counter(o.drop_reason for o in outcomes if o.status != InferenceResult.STATUS_OK)
    print(f'\nsummary: {len(outcomes)}/{frames} frames accounted for, {len(ok)} classified, '
          f'{sum(drops.values())} dropped {dict(drops) if drops else ""}')
    if ok:
        lat = np.array([o.end_to_end_ms for o in ok])
        labelled = [o for o in ok if o.true_class_id >= 0]
        per_exit = defaultdict(list)
        for o in labelled:
            per_exit[o.exit_index].append(o.class_id == o.true_class_id)
        if labelled:
            top1 = np.mean([o.class_id == o.true_class_id for o in labelled])
            print(f'  top-1 on these frames: {100 * top1:.1f} % ({len(labelled)} labelled)')
        for e in sorted(per_exit):
            print(f'    exit {e}: {100 * np.mean(per_exit[e]):.1f} % of {len(per_exit[e])} frames')
        print(f'  end-to-end latency: p50 {np.percentile(lat, 50):.1f} ms, p95 '
              f'{np.percentile(lat, 95):.1f} ms, max {lat.max():.1f} ms')
        print(f'  deadline met: {100 * np.mean([o.deadline_met for o in ok]):.1f} % of '
              'classified frames')
    sys.stdout.flush()
    return 0 if len(outcomes) >= frames else 1
