"""
planner_node: turn link quality + deadline into an exit/split decision and push it.

Subscribes ``edgent/link_quality`` (any number of publishers: the newest estimate wins), plans
with the Edgent optimizer (``policy`` picks Edgent or a baseline) behind hysteresis, publishes
each decision on ``edgent/decision`` (reliable, transient local: late joiners get the current
one) and sets ``exit_index``/``split_index``/``deadline_ms`` (and ``encoding``,
``confidence_threshold``) on the camera node and ``exit_index``/``split_index`` on the edge node
through their parameter services, atomically, asynchronously, with a timeout and retry. A
refused set is logged with the node's reason.

Beyond the paper (each off by default): ``encodings`` lets the Edgent policy also choose how the
tensor crosses the link (measured top-1/bytes per encoding from the accuracy table);
``confidence_threshold`` plans for BranchyNet early exit (worst-case latency, cascade top-1);
the edge's reported batch size scales the predicted edge time (``edge_batching``).
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Dict, Optional

from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient

from . import qos
from ..core.artifacts import ArtifactError, load_accuracy, read_config
from ..core.calibration import LatencyCalibration
from ..msg import ExitSplitDecision, InferenceResult, LinkQuality
from .node_util import accept, declare, refuse, run
from ..core.optimizer import (calibrate, decide, Decision, EdgentProblem, evaluate, Hysteresis,
                              HysteresisStep, PLANNER_POLICIES, scale_edge, scale_robot)

STRATEGIES = ('per-sample', 'map')
# Calibration factors move in steps of this (relative): a rebuilt planning problem costs a few
# ms of robot CPU, and finer steps would change nothing the planner decides.
CALIBRATION_STEP = 0.05


class _Target:
    """One node whose parameters follow the decision, with its in-flight request."""

    def __init__(self, node: Node, name: str, with_deadline: bool):
        self.name = name
        self.client = AsyncParameterClient(node, name)
        self.with_deadline = with_deadline
        self.applied: Optional[tuple] = None
        self.pending: Optional[tuple] = None
        self.sent_s = 0.0
        self.future = None
        self.refusals = 0


class PlannerNode(Node):
    """Edgent's online planner."""

    def __init__(self, **kwargs):
        super().__init__('planner_node', **kwargs)
        weights = declare(self, 'weights_path', '', 'weights whose header names the model '
                          '(only the architecture is read); empty = shipped', read_only=True)
        acc_path = declare(self, 'accuracy_path', '', 'accuracy table JSON; empty = shipped',
                           read_only=True)
        lat_path = declare(self, 'latency_models_path', '',
                           'latency models JSON; empty = shipped', read_only=True)
        overhead_ms = declare(self, 'overhead_ms', 2.0, 'per-message link overhead (ms)',
                              float_range=(0.0, 10_000.0), read_only=True)
        robot_scale = declare(self, 'robot_time_scale', 1.0,
                              'robot layer times x this (a robot slower than the profiled one)',
                              float_range=(0.01, 1000.0), read_only=True)
        self.encodings = declare(self, 'encodings', ['raw'], 'tensor encodings the edgent '
                                 'policy may choose (raw = the paper\'s; e.g. [raw, fp16, int8, '
                                 'int8-zlib, png, jpeg]); needs the measured encoding table')
        self.confidence_threshold = declare(
            self, 'confidence_threshold', 0.0, 'BranchyNet early exit threshold (nats) pushed '
            'to the camera and planned for; 0 = off', float_range=(0.0, 100.0))
        self.edge_batching = declare(self, 'edge_batching', True, 'scale predicted edge time by '
                                     'the batch size the edge reports (profiled batch cost)')
        self.calibration = declare(self, 'calibration', True, 'correct the latency model by the '
                                   'measured/predicted ratios of recent frames (edgent/outcome)')
        self.calibration_quantile = declare(
            self, 'calibration_quantile', 0.99, 'decide with this quantile of the recent robot '
            'compute ratios (the deadline then holds for that share of frames); the median is '
            'reported; the offloaded part always uses its median', float_range=(0.5, 1.0))
        self.calibration_window_s = declare(self, 'calibration_window_s', 60.0,
                                            'ratios older than this are forgotten',
                                            float_range=(1.0, 3600.0), read_only=True)
        self._acc_path = acc_path or None
        try:
            from ..core.latency import LatencyModels
            self.cfg = read_config(weights or None)
            self.model_id = self.cfg.model_id()
            self.accuracy = load_accuracy(self._acc_path, model_id=self.model_id)
            self.models = LatencyModels.load(lat_path or None, model_id=self.model_id)
            self._overhead_ms, self._robot_scale = overhead_ms, robot_scale
            self.base_problem = self._build_problem(self.encodings, self.confidence_threshold)
        except (ArtifactError, ValueError) as exc:
            self.get_logger().fatal(f'cannot load planner artifacts: {exc}')
            raise SystemExit(2) from exc
        self.problem = self.base_problem
        self.deadline_ms = declare(self, 'deadline_ms', 200.0, 'latency deadline (ms)',
                                   float_range=(1.0, 60_000.0))
        self.policy = declare(self, 'policy', 'edgent',
                              f'one of {", ".join(PLANNER_POLICIES)}')
        self.true_bandwidth_bps = declare(
            self, 'true_bandwidth_bps', 0.0, 'policy true-bandwidth only: the true uplink '
            'bandwidth of the moment, set from outside (the testbed); 0 = link down',
            float_range=(0.0, 1e12))
        self.link_timeout_s = declare(self, 'link_timeout_s', 3.0,
                                      'no link quality for this long: plan device-only',
                                      float_range=(0.1, 3600.0))
        self.set_timeout_s = declare(self, 'set_timeout_s', 1.0,
                                     'parameter set not answered: retry after this',
                                     float_range=(0.05, 60.0))
        rel_change = declare(self, 'hysteresis_rel_change', 0.2,
                             'switch when bandwidth moved by this fraction',
                             float_range=(0.01, 0.99), read_only=True)
        dwell = declare(self, 'min_dwell_s', 2.0, 'minimum time between non-urgent switches',
                        float_range=(0.0, 3600.0), read_only=True)
        self.strategy = declare(self, 'strategy', 'per-sample',
                                'edgent policy: per-sample (plan every estimate, hysteresis) or '
                                'map (configuration map + change-point detection)')
        map_path = declare(self, 'config_map_path', '', 'configuration map JSON (edgent-ros '
                           'build-map); needed by strategy map', read_only=True)
        self.cmap = None
        if map_path:
            from ..core.config_map import ConfigMap, MapStrategy
            try:
                self.cmap = MapStrategy(ConfigMap.load(map_path, model_id=self.model_id))
            except ArtifactError as exc:
                self.get_logger().fatal(f'cannot load the configuration map: {exc}')
                raise SystemExit(2) from exc
        if self.strategy not in STRATEGIES or (self.strategy == 'map' and self.cmap is None):
            self.get_logger().fatal(f'strategy must be one of {STRATEGIES} (map needs '
                                    f'config_map_path), got {self.strategy!r}')
            raise SystemExit(2)
        camera = declare(self, 'camera_node', 'camera_node',
                         'node whose exit/split/deadline follow the decision', read_only=True)
        edge = declare(self, 'edge_node', 'edge_node',
                       'edge node to tell (advisory warm-up); empty = none', read_only=True)
        if self.policy not in PLANNER_POLICIES:
            self.get_logger().fatal(f'policy must be one of {PLANNER_POLICIES}, '
                                    f'got {self.policy!r}')
            raise SystemExit(2)
        self.hyst = Hysteresis(rel_change=rel_change, min_dwell_s=dwell,
                               policy=self._hyst_policy())
        self.add_on_set_parameters_callback(self._on_set)
        self.add_post_set_parameters_callback(self._post_set)

        self.targets = [_Target(self, camera, True)]
        if edge:
            self.targets.append(_Target(self, edge, False))
        self.calib = LatencyCalibration(window_s=self.calibration_window_s)
        self._problem_key = None
        self._published_ms: Optional[float] = None
        self.model_problem = self.report_problem = self.problem
        self.links: Dict[str, LinkQuality] = {}
        self.link_rx_s: Dict[str, float] = {}
        self.decision: Optional[Decision] = None
        self.decision_pub = self.create_publisher(ExitSplitDecision, 'edgent/decision',
                                                  qos.DECISION)
        self.create_subscription(LinkQuality, 'edgent/link_quality', self._on_link,
                                 qos.LINK_QUALITY)
        self.create_subscription(InferenceResult, 'edgent/outcome', self._on_outcome, qos.RESULT)
        self.create_timer(0.25, self._on_timer)
        self.get_logger().info(f'planner_node: model {self.model_id}, policy {self.policy}, '
                               f'deadline {self.deadline_ms:g} ms')
        self.plan('start')

    def _build_problem(self, encodings, threshold: float) -> EdgentProblem:
        """Return the planning problem for these encodings and confidence threshold."""
        from ..core.artifacts import load_confidence, load_encodings
        table = (load_encodings(self._acc_path, model_id=self.model_id)
                 if list(encodings) != ['raw'] else None)
        conf = load_confidence(self._acc_path, model_id=self.model_id) if threshold > 0 else None
        return scale_robot(EdgentProblem.from_model(
            self.cfg, self.accuracy, self.models, overhead_ms=self._overhead_ms,
            encodings=list(encodings), encoding_table=table, confidence_threshold=threshold,
            confidence_table=conf), self._robot_scale)

    # -- parameters -------------------------------------------------------------------------
    def _on_set(self, params):
        new = {p.name: p.value for p in params}
        if 'encodings' in new or 'confidence_threshold' in new:
            try:
                self._pending_problem = self._build_problem(
                    new.get('encodings', self.encodings),
                    float(new.get('confidence_threshold', self.confidence_threshold)))
            except (ArtifactError, ValueError) as exc:
                return refuse(f'cannot plan with these encodings/threshold: {exc}')
        for p in params:
            if p.name == 'policy' and p.value not in PLANNER_POLICIES:
                return refuse(f'policy must be one of {PLANNER_POLICIES}, got {p.value!r}')
            if p.name == 'strategy' and p.value not in STRATEGIES:
                return refuse(f'strategy must be one of {STRATEGIES}, got {p.value!r}')
            if p.name == 'strategy' and p.value == 'map' and self.cmap is None:
                return refuse('strategy map needs a configuration map (config_map_path)')
        return accept()

    def _post_set(self, params):
        names = {p.name for p in params}
        for p in params:
            if p.name in ('deadline_ms', 'policy', 'link_timeout_s', 'set_timeout_s',
                          'true_bandwidth_bps', 'strategy', 'encodings', 'confidence_threshold',
                          'edge_batching', 'calibration', 'calibration_quantile'):
                setattr(self, p.name, p.value)
        if names & {'encodings', 'confidence_threshold'}:
            self.base_problem = self._pending_problem
            self._problem_key = None
            self.hyst.reset()
        if names & {'calibration', 'calibration_quantile'}:
            self._problem_key = None
        if 'strategy' in names and self.cmap is not None:
            self.cmap.reset()
        if 'policy' in names:
            self.hyst.policy = self._hyst_policy()
            self.hyst.reset()
        if names & {'deadline_ms', 'policy', 'strategy', 'encodings', 'confidence_threshold'} or \
                ('true_bandwidth_bps' in names and self.policy == 'true-bandwidth'):
            self.plan('parameter change')   # re-plan at once

    def _hyst_policy(self) -> str:
        return 'edgent' if self.policy == 'true-bandwidth' else self.policy

    # -- link quality -----------------------------------------------------------------------
    def _on_link(self, msg: LinkQuality) -> None:
        source = msg.header.frame_id or 'default'
        self.links[source] = msg
        self.link_rx_s[source] = time.monotonic()
        if self.cmap is not None and self.strategy == 'map':
            bw = self.bandwidth_bps()
            if bw > 0:
                self.cmap.update(bw / 1e6)   # the change-point detector sees every estimate
        self.plan('link quality')

    def _newest_link(self) -> Optional[LinkQuality]:
        now = time.monotonic()
        fresh = [(self.link_rx_s[s], m) for s, m in self.links.items()
                 if now - self.link_rx_s[s] <= self.link_timeout_s]
        return max(fresh, key=lambda t: t[0])[1] if fresh else None

    def edge_queue_ms(self) -> float:
        """Edge queueing delay to plan for: the newest fresh report (0 if none)."""
        m = self._newest_link()
        q = float(m.edge_queue_ms) if m is not None else 0.0
        return q if math.isfinite(q) and q > 0 else 0.0

    def edge_batch_factor(self) -> float:
        """Edge time x this: the profiled cost of the batch size the edge reports (1: none)."""
        m = self._newest_link()
        b = float(m.edge_batch_size) if m is not None else 1.0
        if not self.edge_batching or not math.isfinite(b) or b <= 1.0:
            return 1.0
        return round(self.models.batch_factor('edge', b), 2)

    def bandwidth_bps(self) -> float:
        """Bandwidth to plan for: the newest fresh estimate; 0 if none or edge unreachable."""
        now = time.monotonic()
        fresh = [(self.link_rx_s[s], m) for s, m in self.links.items()
                 if now - self.link_rx_s[s] <= self.link_timeout_s]
        if not fresh:
            return 0.0
        msg = max(fresh, key=lambda t: t[0])[1]
        if not msg.edge_reachable or not math.isfinite(msg.uplink_bandwidth_bps):
            return 0.0
        return max(0.0, float(msg.uplink_bandwidth_bps))

    # -- calibration ------------------------------------------------------------------------
    def _plan_bandwidth(self) -> float:
        """Return the bandwidth the policy plans with (true-bandwidth: the true one)."""
        if self.policy == 'true-bandwidth':
            return float(self.true_bandwidth_bps)
        return self.bandwidth_bps()

    def _factors(self, quantile: float) -> Dict[str, float]:
        """
        Return the calibration factors, in 5 % steps (the problem is rebuilt only when one moves).

        The robot's compute at ``quantile``; the offloaded part at its median whatever the
        quantile: the bandwidth estimate already follows the link, frame by frame, and a high
        quantile of (measured / predicted at the estimate) would count the link's spread twice.
        """
        if not self.calibration:
            return {'device': 1.0, 'offload': 1.0}
        now = time.monotonic()
        raw = {'device': self.calib.factor(now, 'device', quantile),
               'offload': self.calib.factor(now, 'offload', 0.5)}
        step = math.log(1.0 + CALIBRATION_STEP)
        return {k: round(math.exp(round(math.log(v) / step) * step), 4) for k, v in raw.items()}

    def _on_outcome(self, msg: InferenceResult) -> None:
        """Compare a classified frame's measured latency with the model's prediction."""
        if msg.status != InferenceResult.STATUS_OK or not self.calibration:
            return
        if msg.requested_exit_index and msg.requested_exit_index != msg.exit_index:
            return   # left at a confident side exit: faster than the configuration it ran
        bw = self._plan_bandwidth()
        try:
            p = evaluate(self.model_problem, bw, int(msg.exit_index), int(msg.split_index),
                         encoding=msg.encoding or 'raw')
        except ValueError:
            return   # a configuration this planner does not model
        now = time.monotonic()
        self.calib.add(now, 'device', p.device_ms, float(msg.device_ms))
        if msg.finished_on == InferenceResult.FINISHED_ON_EDGE:
            self.calib.add(now, 'offload', p.transfer_ms + p.edge_ms,
                           float(msg.end_to_end_ms) - float(msg.device_ms))

    # -- planning ---------------------------------------------------------------------------
    def plan(self, why: str) -> None:
        """Compute the decision in force now; publish and push it when it changed."""
        q = round(self.edge_queue_ms(), 1)   # edge load enters the edge-time prediction
        f = self.edge_batch_factor()
        fq, fm = self._factors(self.calibration_quantile), self._factors(0.5)
        key = (q, f, tuple(fq.values()), tuple(fm.values()))
        if key != self._problem_key:
            self._problem_key = key
            self.model_problem = dataclasses.replace(scale_edge(self.base_problem, f),
                                                     edge_queue_ms=q)
            # decide on a high quantile of the measured/predicted ratios, report the median
            self.problem = calibrate(self.model_problem, fq['device'], fq['offload'])
            self.report_problem = calibrate(self.model_problem, fm['device'], fm['offload'])
        bw = self._plan_bandwidth()
        bw_q = bw / fq['offload']
        if self.policy == 'true-bandwidth':
            # the Edgent rule at the true bandwidth: no estimate, no hysteresis
            d = decide(self.problem, bw_q, self.deadline_ms)
            step = HysteresisStep(d, self.decision is None or d.key != self.decision.key,
                                  'true bandwidth')
        elif self.policy == 'edgent' and self.strategy == 'map':
            d = self.cmap.decide(self.problem, bw_q, self.deadline_ms,
                                 level_scale=1.0 / fq['offload'])
            step = HysteresisStep(d, self.decision is None or d.key != self.decision.key,
                                  'map')
        else:
            step = self.hyst.update(time.monotonic(), self.problem, bw_q, self.deadline_ms)
        d = step.decision
        changed = self.decision is None or step.switched or why == 'parameter change' \
            or d.key != self.decision.key
        self.decision = d
        shown = dataclasses.replace(evaluate(self.report_problem, bw / fm['offload'],
                                             d.exit_index, d.split_index, d.deadline_ms,
                                             d.encoding),
                                    feasible=d.feasible, reason=d.reason, bandwidth_bps=bw)
        moved = self._published_ms is not None and math.isfinite(shown.total_ms) and \
            abs(shown.total_ms - self._published_ms) > 0.05 * max(self._published_ms, 1e-3)
        if not changed and not moved:
            return
        if changed:
            self.get_logger().info(
                f'decision ({why}; {step.why}): exit {d.exit_index} split {d.split_index} '
                f'{d.encoding} predicted {shown.total_ms:.1f} ms (device {shown.device_ms:.1f} '
                f'+ link {shown.transfer_ms:.1f} + edge {shown.edge_ms:.1f}) at '
                f'{bw / 1e6:.3f} Mbit/s, deadline {d.deadline_ms:g} ms, feasible {d.feasible}'
                + (f'; calibration x{fq["device"]:g} device, x{fq["offload"]:g} offload '
                   f'(q{self.calibration_quantile:g})' if fq != {'device': 1.0, 'offload': 1.0}
                   else ''))
        self._published_ms = shown.total_ms
        self.decision_pub.publish(self._decision_msg(shown, step.why))
        if changed:
            self._push()

    def _decision_msg(self, d: Decision, why: str) -> ExitSplitDecision:
        m = ExitSplitDecision()
        m.header.stamp = self.get_clock().now().to_msg()
        m.header.frame_id = self.get_namespace()
        m.model_id = self.model_id
        m.policy = self.policy
        m.exit_index = d.exit_index
        m.split_index = d.split_index
        m.encoding = d.encoding
        m.predicted_device_ms = float(d.device_ms)
        m.predicted_transfer_ms = float(d.transfer_ms) if math.isfinite(d.transfer_ms) else -1.0
        m.predicted_edge_ms = float(d.edge_ms)
        m.predicted_total_ms = float(d.total_ms) if math.isfinite(d.total_ms) else -1.0
        m.expected_accuracy = float(d.accuracy)
        m.bandwidth_bps = float(d.bandwidth_bps) if math.isfinite(d.bandwidth_bps) else 1e300
        m.deadline_ms = float(d.deadline_ms)
        m.feasible = bool(d.feasible)
        m.reason = d.reason or why
        return m

    # -- parameter pushing ------------------------------------------------------------------
    def _want(self, t: _Target) -> tuple:
        d = self.decision
        if not t.with_deadline:   # the edge: advisory exit/split only
            return (d.exit_index, d.split_index, None)
        return (d.exit_index, d.split_index, self.deadline_ms, d.encoding,
                float(self.confidence_threshold))

    def _push(self) -> None:
        for t in self.targets:
            want = self._want(t)
            if t.applied == want or (t.pending == want and t.future is not None
                                     and not t.future.done()):
                continue
            if not t.client.services_are_ready():
                continue   # retried by the timer
            params = [Parameter('exit_index', value=int(want[0])),
                      Parameter('split_index', value=int(want[1]))]
            if want[2] is not None:
                params += [Parameter('deadline_ms', value=float(want[2])),
                           Parameter('encoding', value=str(want[3])),
                           Parameter('confidence_threshold', value=float(want[4]))]
            t.pending, t.sent_s = want, time.monotonic()
            t.future = t.client.set_parameters_atomically(
                params, callback=lambda f, t=t, want=want: self._on_set_done(t, want, f))

    def _on_set_done(self, t: _Target, want: tuple, future) -> None:
        if future.cancelled():
            return   # timed out in _on_timer, which already warned and retries
        try:
            result = future.result().result
        except Exception as exc:  # service went away mid-call
            self.get_logger().warning(f'setting parameters on {t.name} failed: {exc}')
            t.future = None
            return
        if result.successful:
            t.applied = want
        else:
            t.refusals += 1
            t.applied = want   # do not hammer a node that refuses; next decision retries
            self.get_logger().error(f'{t.name} refused exit {want[0]} split {want[1]}: '
                                    f'{result.reason}')
        t.future = None

    def _on_timer(self) -> None:
        now = time.monotonic()
        for t in self.targets:
            if t.future is None and t.applied is not None and now - t.sent_s > 5.0:
                t.applied = None   # re-assert every 5 s: a restarted node gets it back
            if t.future is not None and not t.future.done() \
                    and now - t.sent_s > self.set_timeout_s:
                t.future.cancel()
                t.future = None
                self.get_logger().warning(f'no answer from {t.name} in {self.set_timeout_s:g} s; '
                                          'retrying', throttle_duration_sec=5.0)
        if self.decision is not None:
            self.plan('timer')   # picks up stale links (-> device-only)
            self._push()         # retries targets that were not reachable


def main(args=None) -> int:
    """Console entry: ``ros2 run edgent_ros planner_node``."""
    return run(PlannerNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
