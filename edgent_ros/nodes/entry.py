"""
Process entry points of the nodes, with signals caught from the first line on (no rclpy here).

Each executable installs the recording handler of ``signals`` first, then imports its node
module (torch, rclpy, artifacts: seconds), inside the function on purpose: a signal that arrives
during those imports is recorded, not lost, and the process exits quietly instead of spinning.
"""

from typing import Callable

from .signals import install, signalled


def run_guarded(load: Callable[[], Callable[[], int]]) -> int:
    """
    Install the handler, import the node with ``load`` and run its ``main`` unless signalled.

    ``load`` does the heavy imports and returns the ``main`` to run; the testbed's emulated
    camera (``evaluation.emulated_camera``) starts the same way.
    """
    install()
    try:
        main = load()
    except KeyboardInterrupt:
        return 0
    if signalled():
        return 0
    return main()


def _camera():
    from .camera_node import main
    return main


def _edge():
    from .edge_node import main
    return main


def _planner():
    from .planner_node import main
    return main


def _viz():
    from .viz_node import main
    return main


def camera_node() -> int:
    """``camera_node`` executable."""
    return run_guarded(_camera)


def edge_node() -> int:
    """``edge_node`` executable."""
    return run_guarded(_edge)


def planner_node() -> int:
    """``planner_node`` executable."""
    return run_guarded(_planner)


def viz_node() -> int:
    """``viz_node`` executable."""
    return run_guarded(_viz)
