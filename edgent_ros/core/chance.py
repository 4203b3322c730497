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
  is already in the calibrated problem), taken as their empirical distribution;
- ``B``, ``a`` and ``b`` independent (the robot, the link and the edge are three machines).

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
from typing import Optional, Sequence

import numpy as np
from scipy.special import ndtr

from .optimizer import (check_bandwidth, check_deadline, check_policy, Decision, EdgentProblem,
                        evaluate, LINK_DOWN_BPS, TIE_MS)
from .validate import as_nonneg

# Ratio samples kept per part (the most recent): P is an average over their pairs, so this
# bounds the work per configuration at 64 x 64 normal tails.
MAX_RATIO_SAMPLES = 64
# Two probabilities closer than this are equal (the floating-point sum of a pair average).
TIE_P = 1e-9


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
    median); ``target``: the on-time probability a configuration must reach.
    """

    log_sigma: float = 0.0
    device_ratios: Sequence[float] = ()
    edge_ratios: Sequence[float] = ()
    target: float = 0.99

    def __post_init__(self) -> None:
        """Validate (ValueError naming the field)."""
        s = as_nonneg('log_sigma', self.log_sigma)
        if not math.isfinite(s):
            raise ValueError(f'log_sigma must be finite, got {self.log_sigma!r}')
        if not 0.0 < float(self.target) < 1.0:
            raise ValueError(f'target must be a probability in (0, 1), got {self.target!r}')

    @property
    def deterministic(self) -> bool:
        """True when nothing is uncertain (the rule is then ``optimizer.decide``'s)."""
        return (self.log_sigma == 0.0 and np.ptp(_ratios(self.device_ratios)) == 0.0
                and np.ptp(_ratios(self.edge_ratios)) == 0.0)


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
        fits = ok[off]
        if bw < LINK_DOWN_BPS:
            link = np.zeros(fits.shape)
        else:
            # the rate the link must reach for the frame to be on time
            with np.errstate(divide='ignore'):
                need = t.bits_k[off][:, None, None] / np.where(fits, slack[off], 1.0)
            if belief.log_sigma > 0:
                with np.errstate(divide='ignore'):
                    link = ndtr((math.log(bw) - np.log(need)) / belief.log_sigma)
            else:
                link = (bw >= need).astype(float)
        p[off] = np.where(fits, link, 0.0)
    return p.mean(axis=(1, 2))


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
    why = (f'{policy}: exit {d.exit_index} split {d.split_index} {d.encoding} on time with '
           f'P {p[i]:.4f} {">=" if feasible else "<"} {belief.target:g} (median '
           f'{d.total_ms:.1f} ms, deadline {deadline:g} ms, link sigma {belief.log_sigma:.2f})')
    return replace(d, feasible=feasible, reason=why)


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
