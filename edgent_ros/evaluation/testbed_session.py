"""
One co-inference session on the link testbed: the real nodes in the two namespaces.

``run_session`` starts, on a ``Testbed`` that is up, ``edge_node`` in the edge namespace and
``camera_node`` (plus ``planner_node`` if asked) in the robot namespace, inside the robot's CPU
cgroup, with the Fast DDS profile ``config/fastdds_testbed.xml`` (a ``compute_slowdown`` other than
1 starts the emulated robot camera, ``evaluation.emulated_camera``, instead), and a
recorder in the robot namespace that prints every ``edgent/outcome``, ``edgent/decision`` and
``edgent/link_quality`` as one JSON line. A ``TracePlayer`` may drive the uplink meanwhile. Every
process runs on its own ``ROS_DOMAIN_ID`` with ``ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET`` (DDS
discovery across the veth), every wait is bounded and every process is stopped at the end.

This module imports rclpy only in the recorder role (``python -m
edgent_ros.evaluation.testbed_session _record N TIMEOUT_S``), which runs inside the robot
namespace.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import queue
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[2]


def find_profile(name: str = 'fastdds_testbed.xml') -> Path:
    """Return config/``name`` of the source tree, else of the installed package."""
    cands = [ROOT / 'config' / name]
    for prefix in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep):
        if prefix:
            cands.append(Path(prefix) / 'share' / 'edgent_ros' / 'config' / name)
    for c in cands:
        if c.is_file():
            return c
    return cands[0]


FASTDDS_PROFILE = find_profile()
# a link that loses packets: 200 ms heartbeats (config/fastdds_lossy.xml explains the trade)
LOSSY_PROFILE = find_profile('fastdds_lossy.xml')

OUTCOME_FIELDS = ('sequence', 'status', 'drop_reason', 'finished_on', 'exit_index',
                  'split_index', 'class_id', 'true_class_id', 'device_ms', 'uplink_ms',
                  'edge_ms', 'edge_queue_ms', 'end_to_end_ms', 'deadline_ms', 'deadline_met',
                  'encoding', 'requested_exit_index', 'batch_size', 'confidence')
DECISION_FIELDS = ('exit_index', 'split_index', 'predicted_total_ms', 'bandwidth_bps',
                   'deadline_ms', 'feasible', 'expected_accuracy', 'encoding')
LINK_FIELDS = ('uplink_bandwidth_bps', 'rtt_ms', 'sample_count', 'edge_reachable')


def executable(name: str) -> str:
    """Return the installed node executable ``lib/edgent_ros/<name>``."""
    prefixes = [p for p in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p]
    prefixes.append(str(ROOT / '.ros' / 'install' / 'edgent_ros'))
    for p in prefixes:
        exe = Path(p) / 'lib' / 'edgent_ros' / name
        if exe.exists():
            return str(exe)
    raise FileNotFoundError(f'{name} not found under AMENT_PREFIX_PATH/lib/edgent_ros: run '
                            'scripts/setup.sh and source scripts/env.sh')


def camera_argv(params: Dict[str, object]) -> List[str]:
    """
    Return the command that starts the robot's camera with ``--ros-args`` for ``params``.

    ``compute_slowdown`` 1 (or absent): the installed ``camera_node``, without that parameter
    or ``compute_pacing`` (the production camera has neither); otherwise the testbed's
    emulated robot camera (``python -m edgent_ros.evaluation.emulated_camera``, the same node
    with a slower robot's compute).

    The camera's probe pairs stay frame-sized (``probe_max_bytes`` 0) unless ``params`` say
    otherwise: every committed testbed result was measured with them (before padding probes),
    and the sweeps' shaped links (at most a few Mbit/s) resolve a frame-sized pair anyway.
    """
    params = {'probe_max_bytes': 0, **params}
    camera = executable('camera_node')   # the install must be there (messages, artifacts)
    if float(params.get('compute_slowdown', 1.0)) == 1.0:
        params.pop('compute_slowdown', None)
        params.pop('compute_pacing', None)
        return [camera, *ros_args(params)]
    return [sys.executable, '-m', 'edgent_ros.evaluation.emulated_camera', *ros_args(params)]


def ros_args(params: Dict[str, object]) -> List[str]:
    """Return ``--ros-args -p k:=v ...`` for ``params`` (lists: of strings or of numbers)."""
    out = ['--ros-args']
    for k, v in params.items():
        if isinstance(v, bool):
            v = 'true' if v else 'false'
        elif v == '':
            v = "''"   # an empty value would not parse as a string
        elif isinstance(v, (list, tuple)):
            v = '[' + ','.join(f"'{x}'" if isinstance(x, str) else repr(x) for x in v) + ']'
        out += ['-p', f'{k}:={v}']
    return out


def session_env(domain_id: int, profile: Optional[Path] = FASTDDS_PROFILE) -> Dict[str, str]:
    """Return the environment of every process of a session (DDS across the veth)."""
    env = dict(os.environ, PYTHONUNBUFFERED='1', ROS_DOMAIN_ID=str(domain_id),
               ROS_AUTOMATIC_DISCOVERY_RANGE='SUBNET',
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get('PYTHONPATH', ''))
    env.pop('ROS_STATIC_PEERS', None)
    if profile is None:
        env.pop('FASTDDS_DEFAULT_PROFILES_FILE', None)
    else:
        if not Path(profile).is_file():
            raise FileNotFoundError(f'Fast DDS profile {profile} not found')
        env['FASTDDS_DEFAULT_PROFILES_FILE'] = str(Path(profile).resolve())
    return env


def _stop(p: subprocess.Popen, timeout: float = 10.0) -> Optional[int]:
    if p.poll() is None:
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                break
            try:
                p.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
    return p.poll()


def run_session(tb, camera: Dict[str, object], edge: Optional[Dict[str, object]] = None,
                planner: Optional[Dict[str, object]] = None, compute_slowdown: float = 1.0,
                robot_cgroup: bool = True, profile: Optional[Path] = FASTDDS_PROFILE,
                timeout_s: float = 120.0, logdir: Optional[Path] = None,
                domain_id: Optional[int] = None, trace=None,
                on_line=None) -> Dict[str, object]:
    """
    Run one session until ``camera['max_frames']`` outcomes arrived or ``timeout_s`` passed.

    ``camera``/``edge``/``planner``: node parameters (``planner`` None: no planner, the camera
    keeps its fixed exit/split). ``trace``: a ``TracePlayer`` applied to ``tb.set_rate`` from
    the first outcome on (trace time 0 = the camera's first frame has an outcome: node start-up
    under the robot's CPU quota takes 5-15 s and must not eat into the trace). Returns
    outcomes, decisions and link-quality messages (dicts, each with the wall time ``t`` it was
    received), the rate changes and the log folder.
    """
    frames = int(camera.get('max_frames', 0))
    if frames <= 0:
        raise ValueError('camera needs max_frames > 0 (the session ends on that many outcomes)')
    logdir = Path(logdir or tempfile.mkdtemp(prefix='edgent-testbed-'))
    logdir.mkdir(parents=True, exist_ok=True)
    domain_id = domain_id if domain_id is not None else random.randint(200, 232)
    env = session_env(domain_id, profile)
    # wait_for_subscribers: the first frame waits for the recorder (else its outcomes are lost)
    # and the planner, which reads edgent/outcome too (one reader seen may be the planner's)
    cam = {'source': 'sample', 'loop': True, 'exit_when_done': True, 'wait_for_edge_s': 60.0,
           'wait_for_subscribers': 1 + (planner is not None),
           'compute_slowdown': float(compute_slowdown)}
    cam.update(camera)
    cgroup = tb.cgroup if (robot_cgroup and tb.robot_quota is not None) else None
    procs: Dict[str, subprocess.Popen] = {}
    logs = []
    lines: 'queue.Queue[str]' = queue.Queue()
    result: Dict[str, object] = {'outcomes': [], 'decisions': [], 'link_quality': [],
                                 'rates': [], 'logdir': str(logdir), 'domain_id': domain_id}
    stop_trace = None

    def start(name: str, which: str, argv: List[str], in_cgroup: bool, **kw) -> None:
        log = open(logdir / f'{name}.log', 'w')
        logs.append(log)
        procs[name] = tb.run_in(which, argv, cgroup=cgroup if in_cgroup else None, env=env,
                                stdout=kw.pop('stdout', log), stderr=log,
                                start_new_session=True, **kw)

    try:
        start('recorder', 'robot', [sys.executable, '-m', 'edgent_ros.evaluation.testbed_session',
                                    '_record', str(frames), str(timeout_s)], False,
              stdout=subprocess.PIPE, text=True)

        def read() -> None:
            for line in procs['recorder'].stdout:
                lines.put(line)
        threading.Thread(target=read, daemon=True).start()
        start('edge_node', 'edge', [executable('edge_node'), *ros_args(edge or {})], False)
        if planner is not None:
            start('planner_node', 'robot', [executable('planner_node'), *ros_args(planner)],
                  True)
        start('camera_node', 'robot', camera_argv(cam), True)
        t0 = time.time()
        end = time.monotonic() + timeout_s
        n = 0
        while time.monotonic() < end and n < frames:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                if procs['recorder'].poll() is not None and lines.empty():
                    break
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            kind = rec.pop('topic', '')
            if kind == 'outcome':
                if trace is not None and stop_trace is None:
                    t_trace = time.time()
                    _, stop_trace = trace.start(
                        tb.set_rate, max(1.0, end - time.monotonic()),
                        on_step=lambda w, r, t=t_trace: result['rates'].append(
                            {'t': t + w, 'mbps': r}))
                result['outcomes'].append(rec)
                n += 1
            elif kind == 'decision':
                result['decisions'].append(rec)
            elif kind == 'link_quality':
                result['link_quality'].append(rec)
            if on_line:
                on_line(kind, rec)
        result['elapsed_s'] = time.time() - t0
    finally:
        if stop_trace is not None:
            stop_trace.set()
        result['returncodes'] = {name: _stop(p) for name, p in reversed(list(procs.items()))}
        for log in logs:
            log.close()
    return result


def summarize(outcomes: List[dict]) -> Dict[str, object]:
    """Count outcomes by kind and give latency percentiles of the classified ones."""
    ok = [o for o in outcomes if o['status'] == 0]
    edge = [o for o in ok if o['finished_on'] == 0]
    kinds: Dict[str, int] = {}
    for o in outcomes:
        k = 'ok_edge' if o['status'] == 0 and o['finished_on'] == 0 else \
            'ok_device' if o['status'] == 0 else f'{o["status"]}:{o["drop_reason"]}'
        kinds[k] = kinds.get(k, 0) + 1

    def pct(xs: List[float], q: float) -> Optional[float]:
        if not xs:
            return None
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]
    e2e = [o['end_to_end_ms'] for o in ok]
    return {'frames': len(outcomes), 'kinds': kinds,
            'e2e_p50_ms': pct(e2e, 0.5), 'e2e_p95_ms': pct(e2e, 0.95),
            'device_ms_median': statistics.median([o['device_ms'] for o in ok]) if ok else None,
            'uplink_ms_median': statistics.median([o['uplink_ms'] for o in edge])
            if edge else None,
            'deadline_met_rate': sum(o['deadline_met'] for o in ok) / len(ok) if ok else None,
            'correct_rate': (sum(o['class_id'] == o['true_class_id'] for o in ok) / len(ok))
            if ok else None}


# ------------------------------------------------------------------------------------------
# Recorder role (inside the robot namespace)

def record_topics(node, emit, decision_fields=DECISION_FIELDS, on_outcome=None) -> None:
    """
    Subscribe ``node`` to outcomes, decisions and link quality; ``emit(dict)`` each as a record.

    A record holds the topic kind, the wall time ``t`` it arrived, the listed fields and the
    header stamp (``stamp``, s). ``on_outcome()`` is called after each outcome.
    """
    from ..nodes import qos
    from ..msg import ExitSplitDecision, InferenceResult, LinkQuality

    def record(topic: str, msg, fields) -> None:
        rec = {'topic': topic, 't': time.time()}
        for f in fields:
            v = getattr(msg, f, None)
            rec[f] = v if isinstance(v, (bool, int, float, str)) or v is None else str(v)
        st = getattr(msg, 'header', None)
        if st is not None:
            rec['stamp'] = st.stamp.sec + st.stamp.nanosec * 1e-9
        emit(rec)
        if topic == 'outcome' and on_outcome is not None:
            on_outcome()
    node.create_subscription(InferenceResult, 'edgent/outcome',
                             lambda m: record('outcome', m, OUTCOME_FIELDS), qos.RESULT)
    node.create_subscription(ExitSplitDecision, 'edgent/decision',
                             lambda m: record('decision', m, decision_fields), qos.DECISION)
    node.create_subscription(LinkQuality, 'edgent/link_quality',
                             lambda m: record('link_quality', m, LINK_FIELDS), qos.LINK_QUALITY)


def spin_until(node, done, timeout_s: float) -> None:
    """Spin ``node`` until ``done()`` or ``timeout_s``; then destroy it and shut rclpy down."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    end = time.monotonic() + timeout_s
    try:
        while time.monotonic() < end and not done():
            ex.spin_once(timeout_sec=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        ex.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()


def _record(n: int, timeout_s: float) -> int:
    import rclpy
    rclpy.init()
    node = rclpy.create_node('testbed_recorder')
    count = [0]

    def counted() -> None:
        count[0] += 1
    record_topics(node, lambda rec: print(json.dumps(rec), flush=True), on_outcome=counted)
    spin_until(node, lambda: count[0] >= n, timeout_s)
    return 0


if __name__ == '__main__':
    if sys.argv[1:2] == ['_record']:
        raise SystemExit(_record(int(sys.argv[2]), float(sys.argv[3])))
    raise SystemExit('usage: python -m edgent_ros.evaluation.testbed_session _record N TIMEOUT_S')
