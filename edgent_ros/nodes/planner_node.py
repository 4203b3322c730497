"""
planner_node: turn link quality + deadline into an exit/split decision and push it.

Subscribes ``edgent/link_quality`` (any number of publishers: the newest estimate wins) and
``edgent/outcome`` (calibration), decides with ``core.planner.Planner`` (policy, strategy,
hysteresis, link timeout: the rules are there), publishes each decision on ``edgent/decision``
(reliable, transient local: late joiners get the current one) and sets ``exit_index``/
``split_index``/``deadline_ms``/``encoding``/``confidence_threshold`` on the camera node and
``exit_index``/``split_index`` on the edge node through their parameter services, atomically,
asynchronously, with a timeout and retry. A refused set is logged with the node's reason.

Beyond the paper (each off by default): ``encodings`` (how the tensor crosses the link),
``confidence_threshold`` (BranchyNet early exit), ``edge_batching`` (the edge's batch size).

``/diagnostics`` (every second): policy, strategy, the decision in force, the link estimate's
age, calibration, the repair model (with frames left out as outages) and the last parameter
push per node. ERROR when the camera node cannot be reached; WARN when the decision misses the
deadline, the link estimate is stale, or a push was refused / failed / timed out in the last
``diagnostics_window_s`` (``core.diagnostics``).
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
import math
import time
from typing import Any, Dict, Optional

from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient

from . import qos
from ..core.artifacts import (ArtifactError, load_accuracy, load_confidence, load_encodings,
                              read_config)
from ..core.config_map import ConfigMap, MapStrategy
from ..core.diagnostics import grade, message, PlannerHealth, planner_findings, RecentCounts
from ..core.latency import LatencyModels
from ..core.ledger import MAX_THRESHOLD
from ..core.model_desc import load_description
from ..core.model_plan import (load_block_latency, load_model_accuracy, load_model_encodings,
                               load_table, problem_for)
from ..core.optimizer import Decision, EdgentProblem, PLANNER_POLICIES, scale_robot
from ..core.planner import FIXED_HELP, LinkReport, Outcome, Planner, SETTINGS
from ..msg import ExitSplitDecision, InferenceResult, LinkQuality
from .node_util import (accept, declare, declare_diagnostics, diagnostic_status,
                        publish_diagnostics, refuse, run)

# policies that plan without the link estimate (a stale one is then no problem)
NO_LINK_POLICIES = ('device-only', 'true-bandwidth', 'fixed')


class _Target:
    """One node whose parameters follow the decision, with its in-flight request."""

    def __init__(self, node: Node, name: str, with_deadline: bool):
        self.name = name
        self.client = AsyncParameterClient(node, name)
        self.with_deadline = with_deadline
        self.applied: Optional[tuple] = None
        self.sent_s = 0.0
        self.future = None
        self.refusals = 0
        self.failures = 0          # errors and timeouts since start
        self.last = 'none yet'     # the last push's outcome, at last_s (monotonic s)
        self.last_s: Optional[float] = None
        self.ok_once = False       # a push has been acknowledged since start
        self.model_id: Optional[str] = None   # the node's model_id parameter, once read
        self.model_future = None
        self.model_asked_s = 0.0

    def record(self, outcome: str, now_s: float) -> None:
        """Remember the last push's ``outcome`` (``ok``, ``refused: ...``, ``timeout``, ...)."""
        self.last, self.last_s = outcome, now_s
        self.ok_once = self.ok_once or outcome == 'ok'


class PlannerNode(Node):
    """Edgent's online planner: parameters and topics around ``core.planner.Planner``."""

    def __init__(self, **kwargs):
        super().__init__('planner_node', **kwargs)
        weights = declare(self, 'weights_path', '', 'weights whose header names the model '
                          '(only the architecture is read); empty = shipped', read_only=True)
        model_path = declare(self, 'model', '', 'model description (YAML/JSON): plan it from '
                             'the table, block times and accuracy beside it (edgent-ros import, '
                             'profile --model, train-exits); empty = the shipped AlexNet',
                             read_only=True)
        acc_path = declare(self, 'accuracy_path', '', 'accuracy table JSON; empty = shipped',
                           read_only=True)
        lat_path = declare(self, 'latency_models_path', '',
                           'latency models JSON; empty = shipped', read_only=True)
        overhead_ms = declare(self, 'overhead_ms', 2.0, 'per-message link overhead (ms)',
                              float_range=(0.0, 10_000.0), read_only=True)
        self._burst = declare(self, 'link_burst_bytes', 0, 'a token-bucket shaper\'s burst on '
                              'the uplink: a message of at most this many bytes on the wire is '
                              'planned as crossing at once (0 = none, the paper\'s link)',
                              int_range=(0, 10_000_000), read_only=True)
        robot_scale = declare(self, 'robot_time_scale', 1.0,
                              'robot layer times x this (a robot slower than the profiled one)',
                              float_range=(0.01, 1000.0), read_only=True)
        self.encodings = declare(self, 'encodings', ['raw'], 'tensor encodings the edgent '
                                 'policy may choose (raw = the paper\'s; e.g. [raw, fp16, int8, '
                                 'int8-zlib, png, jpeg, bn4]; bn<c>: learned bottlenecks); needs '
                                 'the measured encoding table')
        self.confidence_threshold = declare(
            self, 'confidence_threshold', 0.0, 'BranchyNet early exit threshold (nats) pushed '
            'to the camera and planned for; 0 = off', float_range=(0.0, MAX_THRESHOLD))
        p = {'edge_batching': declare(self, 'edge_batching', True, 'scale predicted edge time '
                                      'by the batch size the edge reports (profiled batch cost)'),
             'calibration': declare(self, 'calibration', True, 'correct the latency model by the '
                                    'measured/predicted ratios of recent frames (edgent/outcome); '
                                    'off discards them'),
             'calibration_quantile': declare(
                 self, 'calibration_quantile', 0.99, 'decision_rule point: decide with this '
                 'quantile of the recent robot compute ratios (the deadline then holds for that '
                 'share of frames); the median is reported; the offloaded part always uses its '
                 'median',
                 float_range=(0.5, 1.0)),
             'decision_rule': declare(
                 self, 'decision_rule', 'chance', 'chance: a configuration is feasible when on '
                 'time with probability >= on_time_target (link estimate spread, measured compute '
                 'spreads); point: its latency at the estimate (robot at calibration_quantile) '
                 'is within the deadline'),
             'on_time_target': declare(
                 self, 'on_time_target', 0.99, 'decision_rule chance: the probability of being '
                 'on time a configuration must reach', float_range=(0.5, 0.9999)),
             'repair_model': declare(
                 self, 'repair_model', True, 'decision_rule chance: count packet-loss repairs '
                 '(core.repairs: frames later than predicted give the per-packet repair '
                 'probability and cost; a frame of more packets waits more often); off: plan '
                 'a clean link'),
             'robot_time_spread': declare(
                 self, 'robot_time_spread', [1.0], 'decision_rule chance: measured / modelled '
                 'robot times measured before start (edgent-ros sweep calibrate-robot writes '
                 'them as spread), planned as the robot\'s spread until its own frames are '
                 'measured; [1.0] = none', read_only=True),
             'calibration_window_s': declare(self, 'calibration_window_s', 60.0,
                                             'ratios older than this are forgotten',
                                             float_range=(1.0, 3600.0), read_only=True)}
        self._acc_path = acc_path or None
        self.described: Optional[Dict[str, Any]] = None   # table, latency, accuracy (--model)
        self.models: Optional[LatencyModels] = None
        try:
            self._overhead_ms, self._robot_scale = overhead_ms, robot_scale
            if model_path:
                if weights:
                    raise ValueError('give model or weights_path, not both')
                files = load_description(model_path).files(latency=lat_path,
                                                           accuracy=acc_path)
                table = load_table(files['table'])
                self.model_id = table['model_id']
                self.described = {
                    'table': table,
                    'latency': load_block_latency(files['latency'], self.model_id),
                    'accuracy': load_model_accuracy(files['accuracy'], self.model_id),
                    'accuracy_path': files['accuracy']}
            else:
                self.cfg = read_config(weights or None)
                self.model_id = self.cfg.model_id()
                self.accuracy = load_accuracy(self._acc_path, model_id=self.model_id)
                self.models = LatencyModels.load(lat_path or None, model_id=self.model_id)
            problem = self._build_problem(self.encodings, self.confidence_threshold)
        except (ArtifactError, ValueError) as exc:
            self.get_logger().fatal(f'cannot load planner artifacts: {exc}')
            raise SystemExit(2) from exc
        p['deadline_ms'] = declare(self, 'deadline_ms', 200.0, 'latency deadline (ms)',
                                   float_range=(1.0, 60_000.0))
        p['policy'] = declare(self, 'policy', 'edgent', f'one of {", ".join(PLANNER_POLICIES)}')
        p['true_bandwidth_bps'] = declare(
            self, 'true_bandwidth_bps', 0.0, 'policy true-bandwidth only: the true uplink '
            'bandwidth of the moment, set from outside (the testbed); 0 = link down',
            float_range=(0.0, 1e12))
        p['fixed_configuration'] = declare(self, 'fixed_configuration', '', FIXED_HELP)
        p['link_timeout_s'] = declare(self, 'link_timeout_s', 3.0,
                                      'no link quality for this long: plan device-only',
                                      float_range=(0.1, 3600.0))
        self.set_timeout_s = declare(self, 'set_timeout_s', 1.0,
                                     'parameter set not answered: retry after this',
                                     float_range=(0.05, 60.0))
        p['rel_change'] = declare(self, 'hysteresis_rel_change', 0.2,
                                  'switch when bandwidth moved by this fraction',
                                  float_range=(0.01, 0.99), read_only=True)
        p['min_dwell_s'] = declare(self, 'min_dwell_s', 2.0,
                                   'minimum time between non-urgent switches',
                                   float_range=(0.0, 3600.0), read_only=True)
        p['strategy'] = declare(self, 'strategy', 'per-sample',
                                'edgent policy: per-sample (plan every estimate, hysteresis) or '
                                'map (configuration map + change-point detection)')
        map_path = declare(self, 'config_map_path', '', 'configuration map JSON (edgent-ros '
                           'build-map); needed by strategy map', read_only=True)
        if map_path:
            try:
                p['cmap'] = MapStrategy(ConfigMap.load(map_path, model_id=self.model_id))
            except ArtifactError as exc:
                self.get_logger().fatal(f'cannot load the configuration map: {exc}')
                raise SystemExit(2) from exc
        camera = declare(self, 'camera_node', 'camera_node',
                         'node whose exit/split/deadline follow the decision', read_only=True)
        edge = declare(self, 'edge_node', 'edge_node',
                       'edge node to tell (advisory warm-up); empty = none', read_only=True)
        try:
            self.planner = Planner(problem, **p, batch_factor=(
                partial(self.models.batch_factor, 'edge') if self.models is not None else None))
        except ValueError as exc:
            self.get_logger().fatal(str(exc))
            raise SystemExit(2) from exc
        self.diag_pub, window_s = declare_diagnostics(self, self._on_diagnostics)
        self.recent = RecentCounts(window_s)   # push_ok / push_failed / push_timeout:<node>
        self._link_heard_s: Optional[float] = None   # newest edgent/link_quality (monotonic s)
        self.add_on_set_parameters_callback(self._on_set)
        self.add_post_set_parameters_callback(self._post_set)
        self.targets = [_Target(self, camera, True)]
        if edge:
            self.targets.append(_Target(self, edge, False))
        self.decision_pub = self.create_publisher(ExitSplitDecision, 'edgent/decision',
                                                  qos.DECISION)
        self.create_subscription(LinkQuality, 'edgent/link_quality', self._on_link,
                                 qos.LINK_QUALITY)
        self.create_subscription(InferenceResult, 'edgent/outcome', self._on_outcome, qos.RESULT)
        self.create_timer(0.25, self._on_timer)
        self.get_logger().info(f'planner_node: model {self.model_id}, policy {p["policy"]}, '
                               f'deadline {p["deadline_ms"]:g} ms')
        self.plan('start')

    def _build_problem(self, encodings, threshold: float) -> EdgentProblem:
        """Return the planning problem for these encodings and confidence threshold."""
        problem = self._problem_of(encodings, threshold)
        return replace(problem, link_burst_bytes=self._burst) if self._burst else problem

    def _problem_of(self, encodings, threshold: float) -> EdgentProblem:
        if self.described is not None:
            if threshold > 0:
                raise ValueError('confidence early exit is measured for the shipped AlexNet '
                                 'only; a described model plans without it')
            d = self.described
            table = (load_model_encodings(d['accuracy_path'], self.model_id)
                     if list(encodings) != ['raw'] else None)
            return problem_for(d['table'], d['latency'], d['accuracy'],
                               overhead_ms=self._overhead_ms,
                               robot_time_scale=self._robot_scale, encodings=list(encodings),
                               encoding_table=table)
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
        self._pending_problem = None   # a new base problem for the planner (None: unchanged)
        if 'encodings' in new or 'confidence_threshold' in new:
            try:
                self._pending_problem = self._build_problem(
                    new.get('encodings', self.encodings),
                    float(new.get('confidence_threshold', self.confidence_threshold)))
            except (ArtifactError, ValueError) as exc:
                return refuse(f'cannot plan with these encodings/threshold: {exc}')
        try:
            self.planner.check(self._pending_problem,
                               **{k: v for k, v in new.items() if k in SETTINGS})
        except ValueError as exc:
            return refuse(str(exc))
        return accept()

    def _post_set(self, params):
        new = {p.name: p.value for p in params}
        for name in ('encodings', 'confidence_threshold', 'set_timeout_s'):
            setattr(self, name, new.get(name, getattr(self, name)))
        if 'diagnostics_window_s' in new:
            self.recent.window_s = new['diagnostics_window_s']
        settings = {k: v for k, v in new.items() if k in SETTINGS}
        if self.planner.configure(self._pending_problem, **settings):
            self.plan('parameter change', force=True)   # re-plan at once

    # -- inputs -----------------------------------------------------------------------------
    def _on_link(self, msg: LinkQuality) -> None:
        self._link_heard_s = time.monotonic()
        self.planner.add_link(self._link_heard_s, LinkReport(
            float(msg.uplink_bandwidth_bps), bool(msg.edge_reachable), float(msg.edge_queue_ms),
            float(msg.edge_batch_size), float(msg.bandwidth_uncertainty), float(msg.rtt_ms)),
            msg.robot or 'default')
        self.plan('link quality')

    def _on_outcome(self, msg: InferenceResult) -> None:
        """Compare a classified frame's measured latency with the model's prediction."""
        self.planner.add_outcome(time.monotonic(), Outcome(
            int(msg.exit_index), int(msg.split_index), float(msg.device_ms),
            float(msg.end_to_end_ms), msg.finished_on == InferenceResult.FINISHED_ON_EDGE,
            msg.encoding or 'raw', int(msg.requested_exit_index),
            msg.status == InferenceResult.STATUS_OK, float(msg.edge_ms + msg.edge_queue_ms)))

    # -- planning ---------------------------------------------------------------------------
    def plan(self, why: str, force: bool = False) -> None:
        """Compute the decision in force now; publish and push it when it changed."""
        up = self.planner.plan(time.monotonic(), why, force=force)
        if up is None:
            return
        if up.changed:
            self.get_logger().info(up.log)
        self.decision_pub.publish(self._decision_msg(up.shown, up.why))
        if up.changed:
            self._push()

    def _decision_msg(self, d: Decision, why: str) -> ExitSplitDecision:
        m = ExitSplitDecision()
        m.header.stamp = self.get_clock().now().to_msg()
        m.robot = self.get_namespace()
        m.model_id = self.model_id
        m.policy = self.planner.policy
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
        d = self.planner.decision
        if not t.with_deadline:   # the edge: advisory exit/split only
            return (d.exit_index, d.split_index, None)
        return (d.exit_index, d.split_index, self.planner.deadline_ms, d.encoding,
                float(self.confidence_threshold))

    def _push(self) -> None:
        for t in self.targets:
            want = self._want(t)
            if t.future is not None and not t.future.done():
                continue   # one request at a time: _on_set_done pushes again if want moved
            if t.applied == want:
                continue
            if not t.client.services_are_ready():
                continue   # retried by the timer
            if not self._same_model(t):
                continue   # asked (or refused): no decision for a node of another model
            params = [Parameter('planned_model_id', value=self.model_id),
                      Parameter('exit_index', value=int(want[0])),
                      Parameter('split_index', value=int(want[1]))]
            if want[2] is not None:
                params += [Parameter('deadline_ms', value=float(want[2])),
                           Parameter('encoding', value=str(want[3])),
                           Parameter('confidence_threshold', value=float(want[4]))]
            t.sent_s = time.monotonic()
            t.future = t.client.set_parameters_atomically(
                params, callback=lambda f, t=t, want=want: self._on_set_done(t, want, f))

    def _same_model(self, t: _Target) -> bool:
        """Read the node's ``model_id`` once; say whether it is the planned model."""
        if t.model_id is None:
            now = time.monotonic()
            if t.model_future is not None and not t.model_future.done() \
                    and now - t.model_asked_s > self.set_timeout_s:
                t.model_future.cancel()       # a lost reply: ask again
                t.model_future = None
            if t.model_future is None or t.model_future.done():
                t.model_asked_s = now
                t.model_future = t.client.get_parameters(
                    ['model_id'], callback=lambda f, t=t: self._on_model_id(t, f))
            return False
        return t.model_id == self.model_id

    def _on_model_id(self, t: _Target, future) -> None:
        try:
            value = future.result().values[0]
        except Exception:   # service went away, or no reply: asked again by the timer
            return
        t.model_id = value.string_value
        if t.model_id != self.model_id:
            reason = (f'{t.name} runs model {t.model_id!r}, the planner plans model '
                      f'{self.model_id!r}: no decision is sent; start both with the same model '
                      '(parameter model)')
            t.refusals += 1
            t.record(f'refused: {reason}', time.monotonic())
            self.recent.add(f'push_failed:{t.name}', time.monotonic())
            self.get_logger().error(reason)
        else:
            self._push()

    def _on_set_done(self, t: _Target, want: tuple, future) -> None:
        if future.cancelled():
            return   # timed out in _on_timer, which already warned and retries
        now = time.monotonic()
        try:
            result = future.result().result
        except Exception as exc:  # service went away mid-call
            self.get_logger().warning(f'setting parameters on {t.name} failed: {exc}')
            t.future = None
            t.failures += 1
            t.record(f'failed: {exc}', now)
            self.recent.add(f'push_failed:{t.name}', now)
            return
        if result.successful:
            t.applied = want
            t.record('ok', now)
            self.recent.add(f'push_ok:{t.name}', now)
        else:
            t.refusals += 1
            t.record(f'refused: {result.reason}', now)
            self.recent.add(f'push_failed:{t.name}', now)
            t.applied = want   # do not hammer a node that refuses; next decision retries
            self.get_logger().error(f'{t.name} refused exit {want[0]} split {want[1]}: '
                                    f'{result.reason}')
        t.future = None
        if self._want(t) != want:
            self._push()   # the decision moved while this request was in flight

    def _on_timer(self) -> None:
        now = time.monotonic()
        for t in self.targets:
            if t.future is None and t.applied is not None and now - t.sent_s > 5.0:
                t.applied = None   # re-assert every 5 s: a restarted node gets it back
                t.model_id = None  # ... and its model is read again (it may have changed)
            if t.model_id not in (None, self.model_id) and now - t.model_asked_s > 5.0:
                t.model_id = None  # a node of another model: look again every 5 s
            if t.future is not None and not t.future.done() \
                    and now - t.sent_s > self.set_timeout_s:
                t.future.cancel()
                t.future = None
                t.failures += 1
                t.record('timeout', now)
                self.recent.add(f'push_timeout:{t.name}', now)
                self.get_logger().warning(f'no answer from {t.name} in {self.set_timeout_s:g} s; '
                                          'retrying', throttle_duration_sec=5.0)
        if self.planner.decision is not None:
            self.plan('timer')   # picks up stale links (-> device-only)
            self._push()         # retries targets that were not reachable

    # -- diagnostics ------------------------------------------------------------------------
    def _on_diagnostics(self) -> None:
        """Publish the status: level from the state now and the recent window's pushes."""
        now = time.monotonic()
        recent = self.recent.counts(now)
        d, camera = self.planner.decision, self.targets[0]
        link_age = None if self._link_heard_s is None else now - self._link_heard_s
        level, reasons = grade(planner_findings(PlannerHealth(
            feasible=None if d is None else bool(d.feasible), link_age_s=link_age,
            link_timeout_s=self.planner.link_timeout_s,
            link_needed=self.planner.policy not in NO_LINK_POLICIES,
            camera_reachable=camera.client.services_are_ready(), camera=camera.name,
            recent=recent, window_s=self.recent.window_s,
            camera_applied=camera.ok_once)))
        values = {'policy': self.planner.policy, 'strategy': self.planner.strategy,
                  'deadline_ms': f'{self.planner.deadline_ms:g}'}
        if d is not None:
            values.update(exit_index=d.exit_index, split_index=d.split_index,
                          encoding=d.encoding, feasible=d.feasible,
                          predicted_total_ms=f'{d.total_ms:.1f}')
        values.update(
            planned_bandwidth_bps=f'{self.planner.plan_bandwidth(now):.0f}',
            link_estimate_age_s='never' if link_age is None else f'{link_age:.1f}',
            link_timeout_s=f'{self.planner.link_timeout_s:g}',
            calibration=self._calibration_status(now),
            repairs=self._repair_status(now),
            diagnostics_window_s=self.recent.window_s)
        for t in self.targets:
            ago = '' if t.last_s is None else f' ({now - t.last_s:.1f} s ago)'
            values[f'last_push:{t.name}'] = t.last + ago
            values[f'push_refusals:{t.name}'] = t.refusals
            values[f'push_failures:{t.name}'] = t.failures
        summary = (f'{self.planner.policy}: ' + ('no decision yet' if d is None else
                   f'exit {d.exit_index} split {d.split_index} {d.encoding}'))
        publish_diagnostics(self, self.diag_pub, [diagnostic_status(
            self, level, message(summary, reasons), values)])

    def _repair_status(self, now: float) -> str:
        """Return the repair model in one line: off, or its per-packet p and outage frames."""
        if not self.planner.repair_model:
            return 'off'
        r = self.planner.repairs
        p, costs = r.estimate(now)
        return (f'p {p:.4f} per packet, {len(costs)} repair costs; {r.stalls} frames over '
                f'{r.max_repair_ms:g} ms late left out as outages (since start)')

    def _calibration_status(self, now: float) -> str:
        """Return the calibration in one line: off, or the decision's factors and samples."""
        if not self.planner.calibration:
            return 'off'
        f = self.planner.factors(now, self.planner.calibration_quantile)
        n = {part: self.planner.calib.count(now, part) for part in f}
        return ', '.join(f'{part} x{f[part]:g} ({n[part]} samples)' for part in f) + \
            f' (q{self.planner.calibration_quantile:g})'


def main(args=None) -> int:
    """Console entry: ``ros2 run edgent_ros planner_node``."""
    return run(PlannerNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
