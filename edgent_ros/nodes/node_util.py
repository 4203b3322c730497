"""Small rclpy helpers shared by the nodes: parameter descriptors, main(), stamps, diagnostics."""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, Optional, Sequence

import rclpy
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)
from rclpy.executors import ExternalShutdownException
import rclpy.executors
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from . import qos
from ..core.artifacts import ArtifactError
from ..core.diagnostics import DEFAULT_WINDOW_S, Level
from ..core.shm_ports import map_zombie_ports, mark_not_ok
from .signals import install, signalled

# EDGENT_SHM_ZOMBIE_FIX=0 leaves dead processes' shared-memory ports alone (the test's control)
SHM_FIX_ENV = 'EDGENT_SHM_ZOMBIE_FIX'

# Longest time a node's spin loop waits before it looks at the context again (s).
SPIN_STEP_S = 0.25
# Every node publishes its /diagnostics status this often (s).
DIAGNOSTICS_PERIOD_S = 1.0


def declare(node: Node, name: str, default: Any, description: str,
            int_range: Optional[Sequence[int]] = None,
            float_range: Optional[Sequence[float]] = None,
            read_only: bool = False, dynamic_typing: bool = False) -> Any:
    """Declare a parameter with a descriptor (range, description, read-only) and return it."""
    desc = ParameterDescriptor(description=description, read_only=read_only,
                               dynamic_typing=dynamic_typing)
    if int_range is not None:
        desc.integer_range = [IntegerRange(from_value=int(int_range[0]),
                                           to_value=int(int_range[1]), step=1)]
    if float_range is not None:
        desc.floating_point_range = [FloatingPointRange(from_value=float(float_range[0]),
                                                        to_value=float(float_range[1]),
                                                        step=0.0)]
    return node.declare_parameter(name, default, desc).value


def refuse(reason: str) -> SetParametersResult:
    """Return a refused SetParametersResult carrying ``reason``."""
    return SetParametersResult(successful=False, reason=reason)


def accept() -> SetParametersResult:
    """Return a successful SetParametersResult."""
    return SetParametersResult(successful=True)


def stamp_to_s(stamp: Any) -> float:
    """Convert a ``builtin_interfaces/Time`` to float seconds."""
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


def load_runner(node: Node, weights: str, threads: int, max_threads: int):
    """
    Load the model into a CoInference runner; declare ``model``, ``threads`` and ``model_id``.

    ``model`` (read-only) is a model description (``edgent-ros import``); empty: the shipped
    5-exit AlexNet with ``weights``. Exits the process (code 2, fatal log naming the file and
    the reason) on a missing or garbled file, a model that cannot be cut, both ``model`` and
    ``weights`` given, or when the ``model_id`` parameter names another model.
    """
    from ..core.weights import load_model
    from ..core.described import load_described
    from ..core.inference import CoInference
    path = declare(node, 'model', '', 'model description (YAML/JSON; edgent-ros import); '
                   'empty = the shipped 5-exit AlexNet (weights_path)', read_only=True)
    n_threads = declare(node, 'threads', threads, 'torch threads',
                        int_range=(1, max_threads), read_only=True)
    try:
        if path:
            if weights:
                raise ValueError(f'give model ({path}) or weights_path ({weights}), not both: '
                                 'a description names its own weights')
            dm = load_described(path)
            for note in dm.notes:
                node.get_logger().warning(f'model {dm.model_id}: {note}')
            runner = CoInference(dm, threads=n_threads,
                                 bottlenecks=_bottlenecks(node, dm.model_id, dm.desc))
        else:
            model = load_model(weights or None)
            runner = CoInference(model, bottlenecks=_bottlenecks(node, model.model_id),
                                 threads=n_threads)
    except (ArtifactError, ValueError) as exc:   # DescriptionError, CutError are ValueErrors
        node.get_logger().fatal(f'cannot load the model: {exc}')
        raise SystemExit(2) from exc
    model_id = declare(node, 'model_id', runner.model_id,
                       'model the weights must match (read only)', read_only=True)
    if model_id != runner.model_id:
        node.get_logger().fatal(f'weights are {runner.model_id!r}, parameter model_id asks '
                                f'for {model_id!r}')
        raise SystemExit(2)
    return runner, model_id


def declare_planned_model(node: Node) -> None:
    """
    Declare ``planned_model_id``: the planner sends its model id with every decision.

    ``check_planned_model`` then refuses a decision planned for another model, so camera,
    edge and planner never run together on different models without saying so.
    """
    declare(node, 'planned_model_id', '', 'model id of the planner\'s last decision (set by '
            'the planner; a decision for another model is refused)')


def check_planned_model(new: Dict[str, Any], model_id: str) -> str:
    """Return why a parameter set from a planner of another model is refused ('' if not)."""
    planned = new.get('planned_model_id', '')
    if planned and planned != model_id:
        return (f'the planner plans model {planned!r}, this node runs {model_id!r}: start the '
                'planner with the same model (parameter model) as camera and edge')
    return ''


def _bottlenecks(node: Node, model_id: str, desc=None):
    """
    Load the learned bottlenecks named by read-only ``bottlenecks_path`` (bn<c> encodings).

    Empty: the shipped set when it exists and fits the model (a described model's: the one
    beside its description, ``<name>.bottlenecks.safetensors``), else none (bn frames are then
    refused). A path that was asked for but cannot be used exits the process (code 2).
    """
    from ..core.bottleneck import BottleneckError, default_path, load_bottlenecks
    path = declare(node, 'bottlenecks_path', '', 'learned bottleneck weights (bn<c> '
                   'encodings); empty = shipped set if it fits the model', read_only=True)
    shipped = default_path(desc)
    if not path and not shipped.is_file():
        return None
    try:
        bns = load_bottlenecks(path or shipped, model_id)
    except BottleneckError as exc:
        if path:
            node.get_logger().fatal(str(exc))
            raise SystemExit(2) from exc
        node.get_logger().warning(f'no learned bottlenecks: {exc}')
        return None
    node.get_logger().info(f'bottlenecks {bns.bottleneck_id}: '
                           + ', '.join(f'{s.name}@{s.split}' for s in bns.specs()))
    return bns


def declare_diagnostics(node: Node, callback: Callable[[], None]):
    """
    Declare ``diagnostics_window_s``, start the ``/diagnostics`` publisher and its timer.

    ``callback`` runs every ``DIAGNOSTICS_PERIOD_S``; returns ``(publisher, window_s)``. The
    node applies later changes of the window in its post-set callback.
    """
    from diagnostic_msgs.msg import DiagnosticArray
    window_s = declare(node, 'diagnostics_window_s', DEFAULT_WINDOW_S,
                       'the /diagnostics level grades the last this many seconds (s): a WARN '
                       'clears this long after its cause stops; counts since start are values',
                       float_range=(0.5, 3600.0))
    pub = node.create_publisher(DiagnosticArray, '/diagnostics', qos.VIZ)
    node.create_timer(DIAGNOSTICS_PERIOD_S, callback)
    return pub, window_s


def diagnostic_status(node: Node, level: Level, message: str, values: dict):
    """
    Return a ``diagnostic_msgs/DiagnosticStatus`` for ``node`` with ``values`` as strings.

    ``level`` is a ``core.diagnostics.Level`` (same values as the message's OK/WARN/ERROR/STALE
    constants, which rclpy holds as one byte).
    """
    from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
    st = DiagnosticStatus()
    st.level = {Level.OK: DiagnosticStatus.OK, Level.WARN: DiagnosticStatus.WARN,
                Level.ERROR: DiagnosticStatus.ERROR,
                Level.STALE: DiagnosticStatus.STALE}[Level(level)]
    st.name = f'edgent_ros: {node.get_fully_qualified_name()}'
    st.hardware_id = node.get_namespace()
    st.message = message
    st.values = [KeyValue(key=str(k), value=str(v)) for k, v in values.items()]
    return st


def publish_diagnostics(node: Node, pub, statuses: list) -> None:
    """Publish ``statuses`` as one ``DiagnosticArray`` stamped now."""
    from diagnostic_msgs.msg import DiagnosticArray
    arr = DiagnosticArray()
    arr.header.stamp = node.get_clock().now().to_msg()
    arr.status = statuses
    pub.publish(arr)


def run(node_factory: Callable[[], Node], args: Optional[list] = None) -> int:
    """
    Init rclpy, spin the node until Ctrl-C / SIGTERM / shutdown, and exit quietly.

    SIGINT/SIGTERM are recorded by ``signals`` (rclpy installs no handler of its own), so the
    context is still up when the loop sees the signal: a node with ``before_shutdown`` (the
    camera: frames still in flight end as ``dropped:shutdown``) finishes its work and publishes
    it before the node is destroyed. A signal that came while the process was still importing
    or while the node was being built ends the process at once, cleanly. Spinning is in bounded
    steps, so a signal or an external shutdown is seen within ``SPIN_STEP_S``.
    """
    install()
    if signalled():
        return 0
    # shared-memory ports a killed process left (a restart reuses their numbers): mapped now,
    # marked not-OK once this node's participant has replaced them (core.shm_ports)
    stale = map_zombie_ports() if os.environ.get(SHM_FIX_ENV, '1') != '0' else []
    try:
        with rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO):
            # whatever fails after a shutdown (making the executor, building the node, adding
            # it, a spin step) ends the process cleanly through the finally below
            executor = node = None
            try:
                executor = rclpy.executors.SingleThreadedExecutor()
                node = node_factory()
                marked, stale = mark_not_ok(stale), []
                if marked:
                    node.get_logger().info(
                        f'marked {len(marked)} shared-memory port(s) of dead processes not-OK, '
                        f'so peers re-open them ({", ".join(marked)})')
                executor.add_node(node)
                while rclpy.ok() and not signalled():
                    executor.spin_once(timeout_sec=SPIN_STEP_S)
                if rclpy.ok() and hasattr(node, 'before_shutdown'):
                    node.before_shutdown()
            except (SystemExit, KeyboardInterrupt, ExternalShutdownException):
                raise
            except Exception:
                if rclpy.ok() and not signalled():
                    raise
                # shut down mid-construction or mid-step (e.g. an invalid wait set)
            finally:
                if executor is not None:
                    executor.shutdown(timeout_sec=1.0)
                if node is not None:
                    node.destroy_node()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        mark_not_ok(stale)
    return 0
