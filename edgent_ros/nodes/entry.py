"""
Process entry points of the nodes, with signals caught from the first line on (no rclpy here).

A node process spends its first seconds importing torch and rclpy and loading artifacts. A
SIGINT that arrives then (``ros2 launch`` stopping early, a test tearing down) was lost: an
import swallowed the ``KeyboardInterrupt``, the node came up and spun for ever, and ``launch``
had to SIGKILL it. So the executables install a recording handler before importing anything
heavy, and ``node_util.run`` exits quietly when a signal was recorded before rclpy's own
handlers took over.
"""

import signal
from typing import List, Optional

_received: List[int] = []


def _record(signum, frame) -> None:   # noqa: ARG001 (signal handler signature)
    _received.append(signum)


def install() -> None:
    """Record SIGINT/SIGTERM instead of acting on them (until rclpy installs its handlers)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _record)


def signalled() -> Optional[int]:
    """Return the first signal recorded since ``install`` (None if none)."""
    return _received[0] if _received else None


def _main(module: str) -> int:
    install()
    import importlib
    try:
        node_module = importlib.import_module(f'edgent_ros.nodes.{module}')
    except KeyboardInterrupt:
        return 0
    if signalled():
        return 0
    return node_module.main()


def camera_node() -> int:
    """``camera_node`` executable."""
    return _main('camera_node')


def edge_node() -> int:
    """``edge_node`` executable."""
    return _main('edge_node')


def planner_node() -> int:
    """``planner_node`` executable."""
    return _main('planner_node')


def viz_node() -> int:
    """``viz_node`` executable."""
    return _main('viz_node')
