"""
Decisions under uncertainty: the most accurate configuration that is on time with probability.

The deterministic rule (``optimizer.decide``) plans with point estimates: a configuration is
feasible when its predicted latency at the estimated bandwidth is within the deadline. Here each
configuration ``i`` gets the probability that the next frame is on time, ::

    P_i = P( device_i * a  +  bits_i / B  +  overhead  +  edge_i * b  <=  deadline )

under a stated model of what is uncertain (``Belief``):

- ``B``, the link's rate for the next frame: log-normal around the estimate's median with the
  estimator's ``log_sigma`` (``link.RobustBandwidthEstimator``: the spread of the next sample,
  the median's own error included);
- ``a`` and ``b``, how much slower or faster than predicted the robot's and the edge's compute
  turn out: the recent measured/predicted ratios, each divided by its median (the median itself
  is already in the calibrated problem), taken as their empirical distribution; the robot's may
  start from a prior spread measured before the planner started (``with_prior``), which the
  live frames push out;
- ``B``, ``a`` and ``b`` independent (the robot, the link and the edge are three machines);
- on a link that loses packets (``repairs``), an offloaded frame of ``n`` packets waits for a
  repair with probability ``q(n) = 1 - (1 - repair_p) ** n``, for an extra time drawn from the
  recent repairs' costs (``repair_ms``), independent of the rest: ``P_i = (1 - q) P_i(clean)
  + q mean_c P_i(clean, slack - c)``. A device-only configuration sends nothing and has none.

``P_i`` is computed exactly for that model: for each pair of ratio samples the link term needs
``B >= bits_i / slack``, a normal tail in ``log B``; the pairs are averaged. A device-only
configuration needs only ``a``. With ``log_sigma = 0`` and no ratio samples every ``P_i`` is 0 or
1 and the rule is the deterministic one (``decide``), which the tests check against the
brute-force oracle; a Monte Carlo of the same model checks the probabilities.

Rule (``decide_chance``): among the policy's configurations with ``P_i >= target``, the most
accurate exit, then the lowest median latency, then the deterministic tie-break (fewer bytes,
larger split, ...). When none reaches the target: the one most likely on time (ties: the
faster, then more accurate: with every probability 0 that is the deterministic rule's fastest
configuration), ``feasible=False``.

No rclpy, no torch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
import math
from typing import Optional, Sequence, Tuple

import numpy as np
from scipy.special import ndtr

from .optimizer import (check_bandwidth, check_deadline, check_policy, Decision, EdgentProblem,
                        evaluate, LINK_DOWN_BPS, TIE_MS)
from .repairs import packets, wait_probability
from .validate import as_nonneg

# Ratio samples kept per part (the most recent): P is an average over their pairs, so this
# bounds the work per configuration at 64 x 64 normal tails.
MAX_RATIO_SAMPLES = 64
# A robot spread prior holds at most this many ratios (a parameter, a calibration file).
MAX_PRIOR_SAMPLES = 256
# Two probabilities closer than this are equal (the floating-point sum of a pair average).
TIE_P = 1e-9
# repair costs enter as at most this many quantiles (bounds the work per configuration)
MAX_REPAIR_COSTS = 5


def check_spread(values: Sequence[float]) -> Tuple[float, ...]:
    """
    Return a robot-time spread prior divided by its median; ValueError naming a bad value.

    ``values``: measured / modelled robot times of frames measured before the planner started
    (``sweep calibrate-robot`` writes them), any scale; ``[1.0]`` (one value) is no spread.
    """
    try:
        xs = [float(x) for x in values]
    except (TypeError, ValueError) as exc:
        raise ValueError(f'robot spread must be numbers, got {values!r}') from exc
    if not 1 <= len(xs) <= MAX_PRIOR_SAMPLES:
        raise ValueError(f'robot spread needs 1 to {MAX_PRIOR_SAMPLES} ratios, got {len(xs)}')
    if any(not (math.isfinite(x) and x > 0) for x in xs):
        raise ValueError(f'robot spread ratios must be finite and > 0, got {xs!r}')
    m = float(np.median(xs))
    return tuple(x / m for x in xs)


def with_prior(prior: Sequence[float], live: Sequence[float]) -> list:
    """
    Return the robot ratios the chance rule plans with: a prior spread, then the live ratios.

    ``prior``: a spread measured before start (``check_spread``: median 1); ``live``: the recent
    measured/predicted ratios (any scale). Both are divided by their medians, so the prior adds
    spread, never a bias (the calibrated problem holds the live median). The prior fills what the
    live samples leave of ``MAX_RATIO_SAMPLES`` (as evenly spaced quantiles of it): it weighs as
    much as 64 frames at start and is pushed out as frames are measured. A prior of one value
    adds nothing.
    """
    lv = _ratios(live) if len(live) else np.zeros(0)
    room = MAX_RATIO_SAMPLES - min(len(lv), MAX_RATIO_SAMPLES)
    if len(prior) <= 1 or room == 0:
        return [float(x) for x in lv]
    return spread_quantiles(prior, room) + [float(x) for x in lv]


def spread_quantiles(ratios: Sequence[float], n: int) -> list:
    """
    Return ``n`` evenly spaced quantiles of ``ratios`` over their median, smallest to largest.

    The first is the smallest ratio and the last the largest (n >= 2): the rule plans for a
    99 % chance, so the tail is what matters, and quantiles taken at mid-points would drop the
    slowest ratios (with 32 of them, everything beyond the 98th percentile).
    """
    xs = np.asarray([float(r) for r in ratios], dtype=float)
    if xs.size == 0:
        raise ValueError('no robot ratio to take a spread of')
    at = np.linspace(0.0, 1.0, n) if n > 1 else np.asarray([0.5])
    return [float(x) for x in np.quantile(xs / np.median(xs), at)]


def _ratios(samples: Optional[Sequence[float]]) -> np.ndarray:
    """Return the samples divided by their median (``[1.0]`` when there are none)."""
    xs = np.asarray([float(x) for x in (samples or ()) if math.isfinite(float(x)) and x > 0],
                    dtype=float)[-MAX_RATIO_SAMPLES:]
    if xs.size == 0:
        return np.ones(1)
    return xs / float(np.median(xs))


@dataclass(frozen=True)
class Belief:
    """
    What the planner knows and how sure it is: the inputs of ``on_time_probability``.

    ``log_sigma``: spread of the link rate (std of its natural log); ``device_ratios`` and
    ``edge_ratios``: recent measured/predicted compute ratios (any scale: each is divided by its
    median); ``target``: the on-time probability a configuration must reach; ``repair_p``: the
    per-packet probability that an offloaded frame waits for a repair, ``repair_ms`` what such a
    wait has recently cost (ms; ``core.repairs``).
    """

    log_sigma: float = 0.0
    device_ratios: Sequence[float] = ()
    edge_ratios: Sequence[float] = ()
    target: float = 0.99
    repair_p: float = 0.0
    repair_ms: Sequence[float] = ()

    def __post_init__(self) -> None:
        """Validate (ValueError naming the field)."""
        s = as_nonneg('log_sigma', self.log_sigma)
        if not math.isfinite(s):
            raise ValueError(f'log_sigma must be finite, got {self.log_sigma!r}')
        if not 0.0 < float(self.target) < 1.0:
            raise ValueError(f'target must be a probability in (0, 1), got {self.target!r}')
        if not 0.0 <= float(self.repair_p) < 1.0:
            raise ValueError(f'repair_p must be a probability in [0, 1), got {self.repair_p!r}')
        if any(not (math.isfinite(float(c)) and c >= 0) for c in self.repair_ms):
            raise ValueError(f'repair_ms must be finite and >= 0, got {list(self.repair_ms)!r}')

    @property
    def repair_costs(self) -> np.ndarray:
        """Return the repair costs the probability averages over (quantiles of ``repair_ms``)."""
        c = np.asarray([float(x) for x in self.repair_ms], dtype=float)
        if self.repair_p <= 0.0 or c.size == 0:
            return np.zeros(0)
        if c.size > MAX_REPAIR_COSTS:
            c = np.quantile(c, (np.arange(MAX_REPAIR_COSTS) + 0.5) / MAX_REPAIR_COSTS)
        return c

    @property
    def deterministic(self) -> bool:
        """True when nothing is uncertain (the rule is then ``optimizer.decide``'s)."""
        return (self.log_sigma == 0.0 and np.ptp(_ratios(self.device_ratios)) == 0.0
                and np.ptp(_ratios(self.edge_ratios)) == 0.0 and self.repair_costs.size == 0)


def on_time_probability(problem: EdgentProblem, bandwidth_bps: float, deadline_ms: float,
                        belief: Belief) -> np.ndarray:
    """
    Return P(on time) of every configuration of ``problem`` (its ``_t`` order).

    ``bandwidth_bps``: the median of the link rate (bit/s); ``deadline_ms``: the budget (ms).
    """
    bw = check_bandwidth(bandwidth_bps)
    deadline = check_deadline(deadline_ms)
    t = problem._t
    a = _ratios(belief.device_ratios)                    # (A,)
    b = _ratios(belief.edge_ratios)                      # (B,)
    fixed = np.where(t.offload, problem.overhead_ms, 0.0)
    edge = np.where(t.offload, t.edge_ms + problem.edge_queue_ms, 0.0)
    # slack[i, j, k]: what is left for the link when robot ratio a[j] and edge ratio b[k] hold
    dev = t.device_ms[:, None, None] * a[None, :, None]
    slack = deadline + TIE_MS - fixed[:, None, None] - dev - edge[:, None, None] * b[None, None, :]
    ok = slack >= 0
    p = ok.astype(float)                                 # device-only: the robot alone decides
    off = t.offload
    if off.any():
        bits = t.bits_k[off][:, None, None]
        p[off] = _link_on_time(bits, slack[off], bw, belief.log_sigma)
        costs = belief.repair_costs
        if costs.size:
            q = wait_probability(belief.repair_p, [packets(b) for b in t.link_bytes[off]])
            waited = np.mean([_link_on_time(bits, slack[off] - c, bw, belief.log_sigma)
                              for c in costs], axis=0)
            p[off] = (1.0 - q)[:, None, None] * p[off] + q[:, None, None] * waited
    return p.mean(axis=(1, 2))


def _link_on_time(bits_k: np.ndarray, slack: np.ndarray, bw: float,
                  log_sigma: float) -> np.ndarray:
    """Return P(the link carries ``bits_k`` within ``slack`` ms) at median rate ``bw``."""
    fits = slack >= 0
    if bw < LINK_DOWN_BPS:
        return np.zeros(np.broadcast(bits_k, slack).shape)
    # the rate the link must reach for the frame to be on time
    with np.errstate(divide='ignore'):
        need = bits_k / np.where(fits, slack, 1.0)
    if log_sigma > 0:
        with np.errstate(divide='ignore'):
            link = ndtr((math.log(bw) - np.log(need)) / log_sigma)
    else:
        link = (bw >= need).astype(float)
    return np.where(fits, link, 0.0)


def decide_chance(problem: EdgentProblem, policy: str, bandwidth_bps: float, deadline_ms: float,
                  belief: Belief) -> Decision:
    """
    Return the policy's most accurate configuration with P(on time) >= ``belief.target``.

    The decision's latency fields are the median prediction at ``bandwidth_bps``; its reason
    gives the probability. See the module docstring for the rule and the infeasible case.
    """
    bw = check_bandwidth(bandwidth_bps)
    deadline = check_deadline(deadline_ms)
    t = problem._t
    mask = t.masks[check_policy(policy)]
    p = on_time_probability(problem, bw, deadline, belief)
    _, _, total = t.breakdown(bw, problem.overhead_ms, problem.edge_queue_ms)
    ok = mask & (p >= belief.target - TIE_P)
    if ok.any():
        acc = np.where(ok, t.acc, -1.0)
        cand = ok & (acc == acc.max())
        cand &= total <= total[cand].min() + TIE_MS
        feasible = True
    else:
        # the likeliest to be on time; when none ever is, the deterministic rule: the fastest
        best = np.where(mask, p, -1.0)
        cand = mask & (best >= best.max() - TIE_P)
        cand &= total <= total[cand].min() + TIE_MS     # inf <= inf: a dead link
        acc = np.where(cand, t.acc, -1.0)
        cand &= acc == acc.max()
        feasible = False
    idx = np.flatnonzero(cand)
    i = int(idx[np.argmin(t.rank[idx])])
    d = evaluate(problem, bw, int(t.exit_of[i]), int(t.split_of[i]), deadline, t.encoding_of[i])
    repair = (f', repair p {belief.repair_p:.4f} cost {np.median(belief.repair_costs):.0f} ms'
              if belief.repair_costs.size else '')
    why = (f'{policy}: exit {d.exit_index} split {d.split_index} {d.encoding} on time with '
           f'P {p[i]:.4f} {">=" if feasible else "<"} {belief.target:g} (median '
           f'{d.total_ms:.1f} ms, deadline {deadline:g} ms, link sigma {belief.log_sigma:.2f}'
           f'{repair}){_passed_over(problem, mask, p, total, i)}')
    return replace(d, feasible=feasible, reason=why)


def _passed_over(problem: EdgentProblem, mask: np.ndarray, p: np.ndarray, total: np.ndarray,
                 chosen: int) -> str:
    """Return why no more accurate configuration was taken: the likeliest one's P and median."""
    t = problem._t
    more = mask & (t.acc > t.acc[chosen])
    if not more.any():
        return ''
    idx = np.flatnonzero(more)
    j = int(idx[np.lexsort((total[idx], -p[idx]))[0]])
    return (f'; more accurate: exit {int(t.exit_of[j])} split {int(t.split_of[j])} '
            f'{t.encoding_of[j]} P {p[j]:.4f} (median {total[j]:.1f} ms)')


def evaluate_chance(problem: EdgentProblem, bandwidth_bps: float, exit_index: int,
                    split_index: int, deadline_ms: float, encoding: str,
                    belief: Belief) -> Decision:
    """Return one configuration's median prediction, feasible when P(on time) >= target."""
    d = evaluate(problem, bandwidth_bps, exit_index, split_index, deadline_ms, encoding)
    t = problem._t
    key = (d.exit_index, d.split_index, d.encoding)
    p = float(on_time_probability(problem, d.bandwidth_bps, d.deadline_ms, belief)[t.index[key]])
    ok = p >= belief.target - TIE_P
    return replace(d, feasible=ok, reason=f'{d.reason}; on time with P {p:.4f}')
