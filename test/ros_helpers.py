"""
Fixtures for tests with real rclpy nodes in separate processes over real DDS.

Each test gets its own ROS_DOMAIN_ID and localhost-only discovery, so two tests (or two runs on
one machine) never hear each other. Nodes are started from their installed executables (what
``ros2 run`` starts) and stopped with SIGINT, then SIGKILL.
"""

import itertools
import os
from pathlib import Path
import random
import signal
import subprocess
import threading
import time

import pytest

import rclpy  # noqa: E402  (conftests skip before importing this module without ROS)

from edgent_ros.evaluation.testbed_session import ros_args  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _prefix() -> Path:
    for p in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep):
        if p and (Path(p) / 'lib' / 'edgent_ros' / 'camera_node').exists():
            return Path(p)
    cand = ROOT / '.ros' / 'install' / 'edgent_ros'
    if (cand / 'lib' / 'edgent_ros' / 'camera_node').exists():
        return cand
    pytest.skip('edgent_ros is not installed (scripts/setup.sh builds it)')


_TAKEN = itertools.count()
# 1..199: not 0 (where users' own nodes run), nor 200..231 (test_launch_precedence's module);
# a full run has ~130 process tests, so the former 100..199 made the last ~30 reuse domains
_DOMAINS = random.Random(os.getpid() ^ int(time.time())).sample(range(1, 200), 199)


@pytest.fixture
def domain_id():
    """
    Return a ROS_DOMAIN_ID of this test's own, exported for child processes.

    Each test takes the next of a run-random sequence over 1..199, so a process that outlived
    its test (or a stale Fast DDS shared-memory port it left) is never on a later test's domain.
    """
    did = _DOMAINS[next(_TAKEN) % len(_DOMAINS)]
    os.environ['ROS_DOMAIN_ID'] = str(did)
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    return did


class Procs:
    """Start node executables; stop them all at teardown; keep their logs."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.procs = {}

    def start(self, executable: str, name: str = None, ns: str = '', remap=(), env=None,
              **params):
        """Start ``lib/edgent_ros/<executable>`` with ``params`` as ``-p k:=v``, ``env`` added."""
        name = name or executable
        args = [str(_prefix() / 'lib' / 'edgent_ros' / executable)] + ros_args(params)
        if ns:
            args += ['-r', f'__ns:=/{ns}']
        for r in remap:
            args += ['-r', r]
        log = open(self.tmp / f'{name}.log', 'w')
        p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True,
                             env=dict(os.environ, PYTHONUNBUFFERED='1', **(env or {})))
        self.procs[name] = (p, log)
        return p

    def stop(self, name: str, sig=signal.SIGINT, timeout: float = 10.0) -> int:
        """Stop one process (SIGINT, then SIGKILL) and return its exit code."""
        p, log = self.procs.pop(name)
        if p.poll() is None:
            os.killpg(p.pid, sig)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
        log.close()
        return p.returncode

    def log(self, name: str) -> str:
        """Return the output of process ``name`` so far."""
        return (self.tmp / f'{name}.log').read_text()

    def stop_all(self):
        """Stop every process still running."""
        for name in list(self.procs):
            self.stop(name)


@pytest.fixture
def procs(tmp_path, domain_id):
    """Process starter for one test; everything is stopped afterwards."""
    pr = Procs(tmp_path)
    yield pr
    pr.stop_all()


class Listener:
    """An in-process rclpy node (own Context) that records messages from topics."""

    def __init__(self):
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node('test_listener', context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.lock = threading.Lock()
        self.received = {}

    def listen(self, msg_type, topic: str, qos):
        """Record every message on ``topic``."""
        self.received[topic] = []

        def cb(m, topic=topic):
            with self.lock:
                self.received[topic].append((time.monotonic(), m))
        self.node.create_subscription(msg_type, topic, cb, qos)

    def spin_until(self, pred, timeout: float) -> bool:
        """Spin until ``pred()`` is true or ``timeout`` seconds passed; return pred()."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred():
                return True
            self.executor.spin_once(timeout_sec=0.05)
        return pred()

    def msgs(self, topic: str):
        """Messages received on ``topic`` so far."""
        with self.lock:
            return [m for _, m in self.received[topic]]

    def close(self):
        """Destroy the node and shut down the context (the executor's wait is bounded)."""
        self.executor.shutdown(timeout_sec=5.0)
        self.node.destroy_node()
        self.context.try_shutdown()


def get_parameters(listener, client, names, timeout: float = 5.0, attempts: int = 4):
    """
    Values of ``names`` from a parameter client, asking again when a reply is lost.

    A service reply can be lost while the reply reader is still being discovered (the request
    reached the server; ``services_are_ready`` only says the request side matched): the future
    never completes. A new request after ``timeout`` seconds gets through; after ``attempts``
    lost replies this fails with the node's name.
    """
    for _ in range(attempts):
        fut = client.get_parameters(list(names))
        if listener.spin_until(fut.done, timeout) and fut.result() is not None:
            return fut.result().values
        fut.cancel()
    raise AssertionError(f'no get_parameters reply from {client.remote_node_name} '
                         f'after {attempts} x {timeout} s')


def publish_link(listener, pub, bps: float) -> None:
    """Publish one external LinkQuality of ``bps`` (edge reachable, batch 1) on ``pub``."""
    from edgent_ros.msg import LinkQuality
    m = LinkQuality()
    m.header.stamp = listener.node.get_clock().now().to_msg()
    m.robot = 'test'
    m.uplink_bandwidth_bps = float(bps)
    m.edge_reachable = True
    m.edge_batch_size = 1.0
    m.source = LinkQuality.SOURCE_EXTERNAL
    pub.publish(m)


@pytest.fixture
def listener(domain_id):
    """Yield a Listener, destroyed after the test."""
    ls = Listener()
    yield ls
    ls.close()
