"""
The online planner's decision logic (no rclpy, no torch): link estimates in, decisions out.

``Planner`` holds what ``planner_node`` decides with: the newest fresh link estimate per source,
the calibration ratios of recent frames, the hysteresis or map strategy state and the decision
in force. The node turns messages into ``LinkReport`` / ``Outcome``, calls ``Planner.plan`` and
publishes / pushes what it returns.

Rules (each one as before the split out of the node):

* bandwidth to plan with: the newest estimate heard within ``link_timeout_s`` (``0``, i.e.
  device-only, when there is none, the edge is unreachable or the estimate is not finite); policy
  ``true-bandwidth`` plans with ``true_bandwidth_bps`` instead (set from outside, no hysteresis);
* the edge's queueing delay and batch size of that estimate enter the edge-time prediction;
* calibration: measured / predicted ratios (``calibration.LatencyCalibration``); the published
  prediction uses their medians; factors move in ``CALIBRATION_STEP`` steps;
* decision rule ``chance`` (default): a configuration is feasible when it is on time with
  probability >= ``on_time_target`` (``chance``: the link estimate's log-normal spread, the
  spreads of the measured robot and edge compute ratios around their medians, the robot's from
  ``robot_time_spread`` until its frames are measured); rule ``point``:
  when its latency at the point estimate, robot compute at ``calibration_quantile``, is within
  the deadline;
* policy ``fixed``: the configuration ``fixed_configuration`` (``exit/split[/encoding]``) whatever
  the link, with its prediction (a baseline, a measurement of one configuration, debugging);
* policy ``edgent`` with strategy ``map``: the configuration map (``config_map.MapStrategy``);
  otherwise ``optimizer.Hysteresis`` (dwell, relative change) around the policy's rule;
* a decision is republished when its configuration changed, when forced (a parameter change),
  or when its predicted total moved by more than ``REPUBLISH_MOVE`` (relative).

Time is passed in (``now_s``, any monotonic clock in seconds).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
import math
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

from .calibration import LatencyCalibration
from .repairs import RepairEstimator
from .chance import Belief, check_spread, decide_chance, evaluate_chance, with_prior
from .link import log_sigma_of
from .optimizer import (calibrate, check_deadline, decide, Decision, EdgentProblem, evaluate,
                        Hysteresis, HysteresisStep, PLANNER_POLICIES, scale_edge)

STRATEGIES = ('per-sample', 'map')
# Calibration factors move in steps of this (relative): a rebuilt planning problem costs a few
# ms of robot CPU, and finer steps would change nothing the planner decides.
CALIBRATION_STEP = 0.05
# An unchanged decision is republished when its predicted total moved by more than this.
REPUBLISH_MOVE = 0.05
RTT_STEP_MS = 5.0           # the planned fixed cost follows the measured RTT in these steps
# The settings ``Planner.configure`` takes (the node's parameters of the same names).
SETTINGS = ('deadline_ms', 'policy', 'strategy', 'true_bandwidth_bps', 'link_timeout_s',
            'edge_batching', 'calibration', 'calibration_quantile', 'fixed_configuration',
            'decision_rule', 'on_time_target', 'repair_model')
# chance: a configuration is feasible when P(on time) >= on_time_target under the link estimate's
# spread and the measured compute spreads (core.chance); point: its latency at the estimate,
# robot compute at calibration_quantile, is within the deadline (before issue 17).
DECISION_RULES = ('chance', 'point')
FIXED_HELP = ('policy fixed only: the configuration to run, exit/split[/encoding] '
              '(e.g. 5/3 or 4/2/int8); empty = none')
_NO_CALIBRATION = {'device': 1.0, 'offload': 1.0}


@dataclass(frozen=True)
class LinkReport:
    """One link-quality estimate (``edgent/link_quality``); bandwidth in bit/s, queue in ms."""

    uplink_bandwidth_bps: float
    edge_reachable: bool = True
    edge_queue_ms: float = 0.0
    edge_batch_size: float = 1.0
    bandwidth_uncertainty: float = 0.0   # coefficient of variation of the next sample's rate
    rtt_ms: float = -1.0                 # round trip of an empty message; < 0: unknown


@dataclass(frozen=True)
class Outcome:
    """
    One finished frame (``edgent/outcome``) as calibration needs it; times in ms.

    ``requested_exit_index`` is the exit the frame was configured for (0: not reported);
    ``ok`` is False for a dropped or refused frame (not used); ``edge_ms``: the edge's own time
    for the frame (its compute plus the rest it held it, as reported; nan: unknown).
    """

    exit_index: int
    split_index: int
    device_ms: float
    end_to_end_ms: float
    finished_on_edge: bool
    encoding: str = 'raw'
    requested_exit_index: int = 0
    ok: bool = True
    edge_ms: float = math.nan


@dataclass(frozen=True)
class PlanUpdate:
    """
    What ``Planner.plan`` asks the node to publish.

    ``decision``: the configuration in force (push it to the nodes when ``changed``);
    ``shown``: the same configuration with its latency predicted under the median calibration
    (publish this); ``why``: the rule that chose it; ``log``: a one-line summary when
    ``changed`` (else empty).
    """

    decision: Decision
    shown: Decision
    why: str
    changed: bool
    log: str = ''


def check_settings(policy: Any = None, strategy: Any = None, has_map: bool = False,
                   decision_rule: Any = None, on_time_target: Any = None) -> None:
    """Raise ``ValueError`` naming a bad setting (``map`` needs a map)."""
    if decision_rule is not None and decision_rule not in DECISION_RULES:
        raise ValueError(f'decision_rule must be one of {DECISION_RULES}, got {decision_rule!r}')
    if on_time_target is not None and not 0.5 <= float(on_time_target) <= 0.9999:
        raise ValueError(f'on_time_target must be in [0.5, 0.9999], got {on_time_target!r}')
    if policy is not None and policy not in PLANNER_POLICIES:
        raise ValueError(f'policy must be one of {PLANNER_POLICIES}, got {policy!r}')
    if strategy is not None and strategy not in STRATEGIES:
        raise ValueError(f'strategy must be one of {STRATEGIES}, got {strategy!r}')
    if strategy == 'map' and not has_map:
        raise ValueError('strategy map needs a configuration map (config_map_path)')


def parse_fixed(text: Any) -> Optional[Tuple[int, int, str]]:
    """Return ``(exit, split, encoding)`` of ``exit/split[/encoding]`` ('' -> None); else raise."""
    if text is None or str(text).strip() == '':
        return None
    parts = str(text).strip().split('/')
    try:
        if len(parts) not in (2, 3):
            raise ValueError
        e, s = int(parts[0]), int(parts[1])
    except ValueError:
        raise ValueError(f'fixed_configuration must be exit/split[/encoding] (e.g. 5/3 or '
                         f'4/2/int8), got {text!r}') from None
    return e, s, (parts[2] if len(parts) == 3 and parts[2] else 'raw')


class Planner:
    """
    Edgent's online planner: the decision in force for the link estimates heard so far.

    ``problem`` is the planning problem before calibration and edge load (robot scaling,
    encodings and confidence threshold already applied); ``cmap`` a ``MapStrategy`` (needed by
    strategy ``map``); ``batch_factor(b)`` the profiled cost of an edge batch of ``b`` frames
    relative to one (``LatencyModels.batch_factor('edge', b)``; None: batching not modelled).
    """

    def __init__(self, problem: EdgentProblem, *, deadline_ms: float = 200.0,
                 policy: str = 'edgent', strategy: str = 'per-sample', cmap: Any = None,
                 true_bandwidth_bps: float = 0.0, link_timeout_s: float = 3.0,
                 rel_change: float = 0.2, min_dwell_s: float = 2.0, edge_batching: bool = True,
                 batch_factor: Optional[Callable[[float], float]] = None,
                 calibration: bool = True, calibration_quantile: float = 0.99,
                 calibration_window_s: float = 60.0, fixed_configuration: str = '',
                 decision_rule: str = 'chance', on_time_target: float = 0.99,
                 repair_model: bool = True, robot_time_spread: Sequence[float] = (1.0,)):
        check_settings(policy, strategy, cmap is not None, decision_rule, on_time_target)
        # chance rule: the robot's spread before its frames are measured (core.chance.with_prior)
        self.robot_time_spread = check_spread(robot_time_spread)
        self.cmap = cmap
        self.batch_factor = batch_factor
        self.hyst = Hysteresis(rel_change=rel_change, min_dwell_s=min_dwell_s,
                               policy=self._hyst_policy(policy))
        self.calib = LatencyCalibration(window_s=calibration_window_s)
        self.repairs = RepairEstimator()
        self.base_problem = problem
        self.problem = self.model_problem = self.report_problem = problem
        self._problem_key: Optional[tuple] = None
        self._published_ms: Optional[float] = None
        self._links: Dict[str, Tuple[float, LinkReport]] = {}
        self.decision: Optional[Decision] = None
        self.policy, self.strategy = policy, strategy
        self.deadline_ms = check_deadline(deadline_ms)
        self.true_bandwidth_bps = float(true_bandwidth_bps)
        self.link_timeout_s = float(link_timeout_s)
        self.edge_batching = bool(edge_batching)
        self.calibration = bool(calibration)
        self.calibration_quantile = float(calibration_quantile)
        self.fixed_configuration = str(fixed_configuration)
        self.decision_rule = str(decision_rule)
        self.on_time_target = float(on_time_target)
        self.repair_model = bool(repair_model)
        self._check_fixed(policy, self.fixed_configuration, problem)

    @staticmethod
    def _hyst_policy(policy: str) -> str:
        return 'edgent' if policy in ('true-bandwidth', 'fixed') else policy

    @staticmethod
    def _check_fixed(policy: str, text: str, problem: EdgentProblem) -> None:
        """
        Raise ValueError unless ``text`` is '' or a configuration of ``problem``.

        Under another policy than ``fixed`` only its form is checked: a pin left over from a
        fixed run (say ``3/5/bn4``) must not block a policy whose encodings lack it.
        """
        fixed = parse_fixed(text)
        if fixed is None:
            if policy == 'fixed':
                raise ValueError('policy fixed needs fixed_configuration (exit/split[/encoding])')
            return
        if policy != 'fixed':
            return
        e, s, enc = fixed
        try:
            evaluate(problem, math.inf, e, s, encoding=enc)
        except ValueError as exc:
            raise ValueError(f'fixed_configuration {text!r}: {exc}') from None

    # -- settings ---------------------------------------------------------------------------
    def check(self, problem: Optional[EdgentProblem] = None, **values: Any) -> None:
        """
        Raise ``ValueError`` if ``configure(problem, **values)`` would be refused.

        Nothing changes. ``problem``: the new base problem set in the same call (new encodings),
        which a fixed configuration with an encoding is checked against.
        """
        bad = set(values) - set(SETTINGS)
        if bad:
            raise ValueError(f'unknown planner settings {sorted(bad)}')
        check_settings(values.get('policy'), values.get('strategy'), self.cmap is not None,
                       values.get('decision_rule'), values.get('on_time_target'))
        if 'deadline_ms' in values:
            check_deadline(values['deadline_ms'])
        if {'policy', 'fixed_configuration'} & set(values):
            self._check_fixed(values.get('policy', self.policy),
                              values.get('fixed_configuration', self.fixed_configuration),
                              problem or self.base_problem)

    def configure(self, problem: Optional[EdgentProblem] = None, **values: Any) -> bool:
        """
        Apply new settings (names in ``SETTINGS``) and/or a new base ``problem``.

        Returns whether the decision must be re-planned at once (``plan(..., force=True)``):
        the deadline, policy, strategy or problem changed, or the true bandwidth under policy
        ``true-bandwidth``, or the fixed configuration under policy ``fixed``.
        """
        self.check(problem, **values)
        for name, value in values.items():
            setattr(self, name, value)
        if problem is not None:
            self.base_problem = problem
            self._problem_key = None
            self.hyst.reset()
        if {'calibration', 'calibration_quantile', 'decision_rule'} & set(values):
            self._problem_key = None
        if 'calibration' in values and not values['calibration']:
            self.calib.clear()    # off discards what was learned: on again starts afresh
            self.repairs.clear()
        if 'strategy' in values and self.cmap is not None:
            self.cmap.reset()
        if 'policy' in values:
            self.hyst.policy = self._hyst_policy(self.policy)
            self.hyst.reset()
        return (problem is not None
                or bool({'deadline_ms', 'policy', 'strategy', 'decision_rule', 'on_time_target',
                         'repair_model'} & set(values))
                or ('true_bandwidth_bps' in values and self.policy == 'true-bandwidth')
                or ('fixed_configuration' in values and self.policy == 'fixed'))

    # -- link quality -----------------------------------------------------------------------
    def add_link(self, now_s: float, report: LinkReport, source: str = 'default') -> None:
        """Record an estimate heard at ``now_s`` (per source; the newest fresh one counts)."""
        self._links[source or 'default'] = (float(now_s), report)
        if self.cmap is not None and self.strategy == 'map':
            bw = self.bandwidth_bps(now_s)
            if bw > 0:
                self.cmap.update(bw / 1e6)   # the change-point detector sees every estimate

    def newest_link(self, now_s: float) -> Optional[LinkReport]:
        """Return the newest estimate heard within ``link_timeout_s`` of ``now_s`` (or None)."""
        fresh = [(rx, r) for rx, r in self._links.values() if now_s - rx <= self.link_timeout_s]
        return max(fresh, key=lambda t: t[0])[1] if fresh else None

    def edge_queue_ms(self, now_s: float) -> float:
        """Edge queueing delay to plan for (ms): the newest fresh report (0 if none)."""
        r = self.newest_link(now_s)
        q = float(r.edge_queue_ms) if r is not None else 0.0
        return q if math.isfinite(q) and q > 0 else 0.0

    def fixed_ms(self, now_s: float) -> float:
        """
        Return the fixed cost (ms) of every offloaded frame besides its bytes and edge time.

        The configured ``overhead_ms``, or the newest fresh report's measured round trip of an
        empty message when that is larger (a link with delay: 100 ms each way adds 200 ms to
        every offloaded frame, whatever its size), rounded up to ``RTT_STEP_MS`` so that RTT
        jitter does not rebuild the problem on every report.
        """
        base = self.base_problem.overhead_ms
        r = self.newest_link(now_s)
        rtt = float(r.rtt_ms) if r is not None else -1.0
        if not math.isfinite(rtt) or rtt <= base:
            return base
        return math.ceil(rtt / RTT_STEP_MS) * RTT_STEP_MS

    def edge_batch_factor(self, now_s: float) -> float:
        """Edge time x this: the profiled cost of the batch size the edge reports (1: none)."""
        r = self.newest_link(now_s)
        b = float(r.edge_batch_size) if r is not None else 1.0
        if not self.edge_batching or self.batch_factor is None or not math.isfinite(b) \
                or b <= 1.0:
            return 1.0
        return round(self.batch_factor(b), 2)

    def bandwidth_bps(self, now_s: float) -> float:
        """Bandwidth estimate (bit/s): the newest fresh one; 0 if none or edge unreachable."""
        r = self.newest_link(now_s)
        if r is None or not r.edge_reachable or not math.isfinite(r.uplink_bandwidth_bps):
            return 0.0
        return max(0.0, float(r.uplink_bandwidth_bps))

    def plan_bandwidth(self, now_s: float) -> float:
        """Return the bandwidth the policy plans with (true-bandwidth: the true one)."""
        if self.policy == 'true-bandwidth':
            return float(self.true_bandwidth_bps)
        return self.bandwidth_bps(now_s)

    # -- calibration ------------------------------------------------------------------------
    def factors(self, now_s: float, quantile: float) -> Dict[str, float]:
        """
        Return the calibration factors, in 5 % steps (the problem is rebuilt only when one moves).

        The robot's compute at ``quantile``; the offloaded part at its median whatever the
        quantile: the bandwidth estimate already follows the link, frame by frame, and a high
        quantile of (measured / predicted at the estimate) would count the link's spread twice.
        """
        if not self.calibration:
            return dict(_NO_CALIBRATION)
        raw = {'device': self.calib.factor(now_s, 'device', quantile),
               'offload': self.calib.factor(now_s, 'offload', 0.5)}
        step = math.log(1.0 + CALIBRATION_STEP)
        return {k: round(math.exp(round(math.log(v) / step) * step), 4) for k, v in raw.items()}

    def add_outcome(self, now_s: float, outcome: Outcome) -> bool:
        """Compare a classified frame's measured latency with the prediction; return if used."""
        if not outcome.ok or not self.calibration:
            return False
        if outcome.requested_exit_index and outcome.requested_exit_index != outcome.exit_index:
            return False   # left at a confident side exit: faster than the configuration it ran
        try:
            p = evaluate(self.model_problem, self.plan_bandwidth(now_s), int(outcome.exit_index),
                         int(outcome.split_index), encoding=outcome.encoding or 'raw')
        except ValueError:
            return False   # a configuration this planner does not model
        used = self.calib.add(now_s, 'device', p.device_ms, float(outcome.device_ms))
        if outcome.finished_on_edge:
            offload_ms = float(outcome.end_to_end_ms) - float(outcome.device_ms)
            used |= self.calib.add(now_s, 'offload', p.transfer_ms + p.edge_ms, offload_ms)
            self.calib.add(now_s, 'edge', p.edge_ms, float(outcome.edge_ms))
            # against the median-calibrated prediction: repairs are what it does not explain
            median = self.calib.factor(now_s, 'offload', 0.5)
            t = self.model_problem._t
            key = (int(outcome.exit_index), int(outcome.split_index), outcome.encoding or 'raw')
            if key in t.index:
                self.repairs.add(now_s, float(t.link_bytes[t.index[key]]),
                                 offload_ms - (p.transfer_ms + p.edge_ms) * median)
        return used

    # -- uncertainty ------------------------------------------------------------------------
    def link_sigma(self, now_s: float) -> float:
        """Return the log-normal spread of the link rate the newest estimate reports (0: none)."""
        r = self.newest_link(now_s)
        return log_sigma_of(r.bandwidth_uncertainty) if r is not None else 0.0

    def belief(self, now_s: float) -> Belief:
        """Return what the chance rule plans with: link and compute spreads, repairs, target."""
        on = self.calibration
        p, costs = self.repairs.estimate(now_s) if on and self.repair_model else (0.0, ())
        live = self.calib.ratios(now_s, 'device') if on else []
        return Belief(self.link_sigma(now_s), with_prior(self.robot_time_spread, live),
                      self.calib.ratios(now_s, 'edge') if on else (), self.on_time_target,
                      repair_p=p, repair_ms=costs)

    # -- planning ---------------------------------------------------------------------------
    def _refresh_problem(self, now_s: float) -> Tuple[Dict[str, float], Dict[str, float]]:
        """Rebuild the problems when edge load or calibration moved; return (fq, fm) factors."""
        q = round(self.edge_queue_ms(now_s), 1)   # edge load enters the edge-time prediction
        f = self.edge_batch_factor(now_s)
        o = self.fixed_ms(now_s)
        fm = self.factors(now_s, 0.5)
        # chance: the spread is in the belief, the problem is the median one
        fq = fm if self.decision_rule == 'chance' else \
            self.factors(now_s, self.calibration_quantile)
        key = (q, f, o, tuple(fq.values()), tuple(fm.values()))
        if key != self._problem_key:
            self._problem_key = key
            self.model_problem = replace(scale_edge(self.base_problem, f), edge_queue_ms=q,
                                         overhead_ms=o)
            # decide on a high quantile of the measured/predicted ratios, report the median
            self.problem = calibrate(self.model_problem, fq['device'], fq['offload'])
            self.report_problem = calibrate(self.model_problem, fm['device'], fm['offload'])
        return fq, fm

    def _step(self, now_s: float, bw_q: float, fq: Dict[str, float]) -> HysteresisStep:
        """Return the policy's decision at the (calibrated) bandwidth ``bw_q``."""
        if self.policy == 'true-bandwidth':
            # the Edgent rule at the true bandwidth: no estimate, no hysteresis
            d = decide(self.problem, bw_q, self.deadline_ms)
            return HysteresisStep(d, self._differs(d), 'true bandwidth')
        if self.policy == 'fixed':
            e, s, enc = parse_fixed(self.fixed_configuration)
            d = evaluate(self.problem, bw_q, e, s, self.deadline_ms, enc)
            return HysteresisStep(d, self._differs(d), 'fixed configuration')
        if self.policy == 'edgent' and self.strategy == 'map':
            d = self.cmap.decide(self.problem, bw_q, self.deadline_ms,
                                 level_scale=1.0 / fq['offload'])
            return HysteresisStep(d, self._differs(d), 'map')
        if self.decision_rule == 'chance':
            belief = self.belief(now_s)
            return self.hyst.update(
                now_s, self.problem, bw_q, self.deadline_ms,
                choose=lambda p, pol, bw, dl: decide_chance(p, pol, bw, dl, belief),
                judge=lambda p, bw, e, s, dl, enc: evaluate_chance(p, bw, e, s, dl, enc, belief))
        return self.hyst.update(now_s, self.problem, bw_q, self.deadline_ms)

    def _differs(self, d: Decision) -> bool:
        return self.decision is None or d.key != self.decision.key

    def plan(self, now_s: float, why: str, force: bool = False) -> Optional[PlanUpdate]:
        """
        Compute the decision in force at ``now_s``; return it if it should be published.

        None when the configuration is unchanged, not ``force``d, and its predicted total moved
        by at most ``REPUBLISH_MOVE`` since the last published one. ``why`` (what triggered
        this plan) only goes into the log line.
        """
        fq, fm = self._refresh_problem(now_s)
        bw = self.plan_bandwidth(now_s)
        step = self._step(now_s, bw / fq['offload'], fq)
        d = step.decision
        changed = force or step.switched or self._differs(d)
        self.decision = d
        shown = replace(evaluate(self.report_problem, bw / fm['offload'], d.exit_index,
                                 d.split_index, d.deadline_ms, d.encoding),
                        feasible=d.feasible, reason=d.reason, bandwidth_bps=bw)
        last = self._published_ms
        moved = last is not None and math.isfinite(shown.total_ms) and \
            abs(shown.total_ms - last) > REPUBLISH_MOVE * max(last, 1e-3)
        if not changed and not moved:
            return None
        self._published_ms = shown.total_ms
        log = ''
        if changed:
            log = (f'decision ({why}; {step.why}): exit {d.exit_index} split {d.split_index} '
                   f'{d.encoding} predicted {shown.total_ms:.1f} ms (device '
                   f'{shown.device_ms:.1f} + link {shown.transfer_ms:.1f} + edge '
                   f'{shown.edge_ms:.1f}) at {bw / 1e6:.3f} Mbit/s, deadline '
                   f'{d.deadline_ms:g} ms, feasible {d.feasible}')
            if fq != _NO_CALIBRATION:
                log += (f'; calibration x{fq["device"]:g} device, x{fq["offload"]:g} offload '
                        + ('(median)' if self.decision_rule == 'chance'
                           else f'(q{self.calibration_quantile:g})'))
            if self.decision_rule == 'chance':
                log += (f'; P(on time) target {self.on_time_target:g}, link sigma '
                        f'{self.link_sigma(now_s):.2f}')
        return PlanUpdate(d, shown, step.why, changed, log)
