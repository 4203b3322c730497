"""
Online phase of Edgent: pick the exit and the split that maximize accuracy under a deadline.

For branch ``e`` (``n`` layers) cut at split ``s`` in ``[0, n]``, layers ``[0, s)`` run on the
robot, the tensor at the cut crosses the uplink, layers ``[s, n)`` run on the edge. The predicted
end-to-end latency (ms) is::

    robot_prefix[s] + (8000 * bytes[s] / bandwidth_bps + overhead_ms  if s < n else 0)
                    + (edge_suffix[s] + edge_queue_ms                 if s < n else 0)

``s == n`` is device-only: nothing is sent, so neither the link nor the edge is involved.

Decision rule (``decide``, the Edgent paper's): among all configurations whose predicted latency
meets the deadline (``total_ms <= deadline_ms``), take the most accurate exit and its fastest
split. Ties are broken deterministically, in this order:

1. equal accuracy (two exits): the lower latency;
2. equal latency (within ``TIE_MS``): fewer payload bytes on the link (device-only sends 0, so it
   wins a tie: no dependence on the link or the edge), then the larger split (more work on the
   robot, less load on a shared edge), then the smaller exit index.

If nothing meets the deadline the decision is the fastest configuration overall (ties: the more
accurate exit, then rule 2), with ``feasible=False`` and a reason giving the numbers. A bandwidth
below ``LINK_DOWN_BPS`` (a dead link) makes every configuration that sends something infinitely
slow, so only device-only splits remain.

The same machinery serves the baselines of the evaluation (``decide_policy``): each policy is the
same rule restricted to a subset of configurations. ``Hysteresis`` keeps a planner from flapping
between configurations when the bandwidth estimate jitters.

This module never imports rclpy (nor torch: ``EdgentProblem.from_model`` imports the model module
lazily).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

# Bandwidth (bit/s) below which the link counts as down: every split that sends something is
# infinitely slow. Tiny on purpose: any real link, however slow, is still a (slow) link.
LINK_DOWN_BPS = 1e-3
# Two predicted latencies (ms) closer than this are equal (1 ps): absorbs floating-point rounding
# of differently ordered sums, nothing a real profiler could resolve.
TIE_MS = 1e-9
# Per-message fixed cost (ms) added to the transfer of every offloaded frame when the caller has
# nothing better: serialization, DDS and the return of the (small) result. A planner should pass
# a measured value (e.g. the probe RTT) instead.
DEFAULT_OVERHEAD_MS = 1.0
POLICIES = ('edgent', 'device-only', 'edge-only', 'partition-only', 'exit-only')
# The planner also runs 'true-bandwidth': the Edgent rule fed with the true bandwidth of the
# moment (set from outside, e.g. by the testbed that shapes the link), no estimate, no hysteresis.
PLANNER_POLICIES = POLICIES + ('true-bandwidth',)


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f'{name} must be a number, got {value!r}')
    return float(value)


def _finite_nonneg(name: str, value: Any) -> float:
    v = _number(name, value)
    if not math.isfinite(v) or v < 0.0:
        raise ValueError(f'{name} must be finite and >= 0, got {value!r}')
    return v


def check_bandwidth(bandwidth_bps: Any) -> float:
    """Return ``bandwidth_bps`` (bit/s) as float; raise ValueError unless it is >= 0 (inf ok)."""
    bw = _number('bandwidth_bps', bandwidth_bps)
    if math.isnan(bw) or bw < 0.0:
        raise ValueError(f'bandwidth_bps must be >= 0 (finite or +inf), got {bandwidth_bps!r}')
    return bw


def check_deadline(deadline_ms: Any) -> float:
    """Return ``deadline_ms`` (ms) as float; raise ValueError unless > 0 (inf: no deadline)."""
    d = _number('deadline_ms', deadline_ms)
    if math.isnan(d) or d <= 0.0:
        raise ValueError(f'deadline_ms must be > 0, got {deadline_ms!r}')
    return d


def check_policy(policy: Any) -> str:
    """Return ``policy``; raise ValueError unless it is one of ``POLICIES``."""
    if policy not in POLICIES:
        raise ValueError(f'unknown policy {policy!r}; expected one of {", ".join(POLICIES)}')
    return policy


def _fmt_bw(bw: float) -> str:
    if bw < LINK_DOWN_BPS:
        return f'{bw:g} bit/s (link down)'
    if math.isinf(bw):
        return 'unlimited bandwidth'
    return f'{bw / 1e6:.3g} Mbit/s'


def _where(split: int, n: int) -> str:
    if split == n:
        return 'device-only'
    if split == 0:
        return 'edge-only'
    return f'{split}/{n} layers on robot'


class _Tables:
    """Flat per-configuration arrays of one problem: entry ``i`` is one (exit, split) pair."""

    def __init__(self, accuracy: Dict[int, float], robot: Dict[int, List[float]],
                 edge: Dict[int, List[float]], nbytes: Dict[int, List[int]]):
        exit_of, split_of, n_of, acc, dev, suf, link = [], [], [], [], [], [], []
        self.offset: Dict[int, int] = {}
        for e in sorted(accuracy):
            n = len(robot[e])
            self.offset[e] = len(exit_of)
            exit_of += [e] * (n + 1)
            split_of += list(range(n + 1))
            n_of += [n] * (n + 1)
            acc += [accuracy[e]] * (n + 1)
            # prefix[s] = robot time of layers [0, s); suffix[s] = edge time of layers [s, n)
            dev.append(np.concatenate(([0.0], np.cumsum(np.asarray(robot[e], dtype=float)))))
            rev = np.cumsum(np.asarray(edge[e], dtype=float)[::-1])[::-1]
            suf.append(np.concatenate((rev, [0.0])))
            link += list(nbytes[e])
        self.exit_of = np.asarray(exit_of, dtype=np.int64)
        self.split_of = np.asarray(split_of, dtype=np.int64)
        self.n_of = np.asarray(n_of, dtype=np.int64)
        self.acc = np.asarray(acc, dtype=float)
        self.device_ms = np.concatenate(dev)
        self.edge_ms = np.concatenate(suf)
        self.link_bytes = np.asarray(link, dtype=np.int64)
        self.bits_k = self.link_bytes.astype(float) * 8000.0   # transfer ms = bits_k / bps
        self.offload = self.split_of < self.n_of
        # Static tie-break rank (rule 2): fewer bytes, then larger split, then smaller exit.
        order = np.lexsort((self.exit_of, -self.split_of, self.link_bytes))
        self.rank = np.empty(len(order), dtype=np.int64)
        self.rank[order] = np.arange(len(order))
        final = int(self.exit_of.max())
        self.final_exit = final
        self.masks = {
            'edgent': np.ones(len(order), dtype=bool),
            'device-only': ~self.offload,
            'edge-only': (self.exit_of == final) & (self.split_of == 0),
            'partition-only': self.exit_of == final,
            'exit-only': (self.split_of == 0) | ~self.offload,
        }

    def breakdown(self, bw: float, overhead_ms: float, queue_ms: float
                  ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return (transfer_ms, edge_ms, total_ms) of every configuration at ``bw`` bit/s."""
        if bw < LINK_DOWN_BPS:
            transfer = np.where(self.offload, np.inf, 0.0)
        else:
            transfer = np.where(self.offload, self.bits_k / bw + overhead_ms, 0.0)
        edge = np.where(self.offload, self.edge_ms + queue_ms, 0.0)
        return transfer, edge, self.device_ms + transfer + edge


@dataclass(frozen=True)
class EdgentProblem:
    """
    Everything the online phase needs for one model: accuracies, latencies and payloads.

    Exits are positive integers (1..NUM_EXITS for the shipped model); every dict has the same
    keys. For exit ``e`` with ``n`` layers: ``robot_ms[e]`` and ``edge_ms[e]`` hold the predicted
    latency (ms) of each layer on the robot and on the edge (length ``n``), ``split_bytes[e]`` the
    payload (bytes) crossing the link at split ``s = 0..n`` (length ``n + 1``, last entry 0:
    device-only sends nothing). ``overhead_ms`` is added to the transfer of every offloaded frame
    (``s < n``), ``edge_queue_ms`` (edge load) to its edge time.

    Frozen: to change the overhead or the edge load, use ``dataclasses.replace``, which validates
    again. The inputs are copied, so later changes to the caller's dicts do not leak in.
    """

    accuracy: Dict[int, float]
    robot_ms: Dict[int, List[float]]
    edge_ms: Dict[int, List[float]]
    split_bytes: Dict[int, List[int]]
    overhead_ms: float
    edge_queue_ms: float = 0.0
    _t: _Tables = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Validate shapes and values (ValueError naming the field) and precompute the tables."""
        acc = self._check_accuracy(self.accuracy)
        exits = sorted(acc)
        robot = self._check_layers('robot_ms', self.robot_ms, exits)
        edge = self._check_layers('edge_ms', self.edge_ms, exits)
        nbytes: Dict[int, List[int]] = {}
        self._check_keys('split_bytes', self.split_bytes, exits)
        for e in exits:
            if len(robot[e]) != len(edge[e]):
                raise ValueError(f'edge_ms[{e}] has {len(edge[e])} layers but robot_ms[{e}] has '
                                 f'{len(robot[e])}')
            nbytes[e] = self._check_bytes(e, self.split_bytes[e], len(robot[e]))
        object.__setattr__(self, 'accuracy', acc)
        object.__setattr__(self, 'robot_ms', robot)
        object.__setattr__(self, 'edge_ms', edge)
        object.__setattr__(self, 'split_bytes', nbytes)
        object.__setattr__(self, 'overhead_ms', _finite_nonneg('overhead_ms', self.overhead_ms))
        object.__setattr__(self, 'edge_queue_ms',
                           _finite_nonneg('edge_queue_ms', self.edge_queue_ms))
        object.__setattr__(self, '_t', _Tables(acc, robot, edge, nbytes))

    @staticmethod
    def _check_keys(name: str, table: Any, exits: Sequence[int]) -> None:
        if not isinstance(table, Mapping):
            raise ValueError(f'{name} must be a dict keyed by exit, got {type(table).__name__}')
        if sorted(table) != list(exits):
            raise ValueError(f'{name} has exits {sorted(table)}, accuracy has {list(exits)}')

    @staticmethod
    def _check_accuracy(accuracy: Any) -> Dict[int, float]:
        if not isinstance(accuracy, Mapping) or not accuracy:
            raise ValueError(f'accuracy must be a non-empty dict {{exit: top1}}, got {accuracy!r}')
        out = {}
        for e, a in accuracy.items():
            if isinstance(e, bool) or not isinstance(e, (int, np.integer)) or e < 1:
                raise ValueError(f'accuracy: exit keys must be integers >= 1, got {e!r}')
            v = _number(f'accuracy[{e}]', a)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f'accuracy[{e}] must be a top-1 in [0, 1], got {a!r}')
            out[int(e)] = v
        return out

    @classmethod
    def _check_layers(cls, name: str, table: Any, exits: Sequence[int]
                      ) -> Dict[int, List[float]]:
        cls._check_keys(name, table, exits)
        out = {}
        for e in exits:
            row = table[e]
            if isinstance(row, (str, bytes)) or not isinstance(row, (Sequence, np.ndarray)) \
                    or len(row) < 1:
                raise ValueError(f'{name}[{e}] must be a non-empty list of per-layer ms, '
                                 f'got {row!r}')
            out[e] = [_finite_nonneg(f'{name}[{e}][{i}]', v) for i, v in enumerate(row)]
        return out

    @staticmethod
    def _check_bytes(e: int, row: Any, n: int) -> List[int]:
        name = f'split_bytes[{e}]'
        if isinstance(row, (str, bytes)) or not isinstance(row, (Sequence, np.ndarray)) \
                or len(row) != n + 1:
            got = len(row) if isinstance(row, (Sequence, np.ndarray)) else repr(row)
            raise ValueError(f'{name} must list bytes for splits 0..{n} ({n + 1} values: the '
                             f'branch has {n} layers), got {got}')
        out = []
        for s, b in enumerate(row):
            v = _finite_nonneg(f'{name}[{s}]', b)
            if v != int(v):
                raise ValueError(f'{name}[{s}] must be a whole number of bytes, got {b!r}')
            out.append(int(v))
        if out[n] != 0:
            raise ValueError(f'{name}[{n}] (device-only) must be 0: nothing is sent, '
                             f'got {row[n]!r}')
        return out

    @classmethod
    def from_model(cls, cfg: Any, accuracy: Mapping[int, float], latency_models: Any,
                   overhead_ms: float = DEFAULT_OVERHEAD_MS, bytes_per_element: float = 4,
                   edge_queue_ms: float = 0.0) -> 'EdgentProblem':
        """
        Build the problem of the multi-exit AlexNet ``cfg`` (``edgent_ros.model``).

        ``latency_models`` is duck-typed: ``branch_layer_ms(host, cfg, exit_index)`` returns the
        predicted per-layer latency (ms) of a branch on ``host`` ('robot' or 'edge').
        ``bytes_per_element`` is the wire size of an activation element (4 fp32, 2 fp16, 1 int8).
        """
        from .model import NUM_EXITS, split_payload_bytes   # lazy: the model module needs torch
        robot, edge, nbytes = {}, {}, {}
        for e in range(1, NUM_EXITS + 1):
            robot[e] = list(latency_models.branch_layer_ms('robot', cfg, e))
            edge[e] = list(latency_models.branch_layer_ms('edge', cfg, e))
            nbytes[e] = [split_payload_bytes(cfg, e, s, bytes_per_element)
                         for s in range(len(robot[e]) + 1)]
        return cls(dict(accuracy), robot, edge, nbytes, overhead_ms, edge_queue_ms)

    @property
    def exits(self) -> List[int]:
        """Exit indices, ascending."""
        return sorted(self.accuracy)

    def branch_len(self, exit_index: int) -> int:
        """Return the number of layers (= largest split) of branch ``exit_index``."""
        self.check_config(exit_index, 0)
        return len(self.robot_ms[exit_index])

    def check_config(self, exit_index: Any, split_index: Any) -> None:
        """Raise ValueError unless ``(exit_index, split_index)`` is a configuration here."""
        if isinstance(exit_index, bool) or not isinstance(exit_index, (int, np.integer)) \
                or int(exit_index) not in self.accuracy:
            raise ValueError(f'exit_index must be one of {self.exits}, got {exit_index!r}')
        n = len(self.robot_ms[int(exit_index)])
        if isinstance(split_index, bool) or not isinstance(split_index, (int, np.integer)) \
                or not 0 <= split_index <= n:
            raise ValueError(f'split_index must be an integer in 0..{n} for exit {exit_index}, '
                             f'got {split_index!r}')


@dataclass(frozen=True)
class Decision:
    """
    One configuration with its predicted latency breakdown (ms) for a bandwidth and deadline.

    ``transfer_ms`` includes the per-message overhead, ``edge_ms`` the edge queue; both are 0 for
    a device-only split, ``transfer_ms`` is inf for an offloading split on a dead link.
    ``accuracy`` is the top-1 of the exit in [0, 1].
    """

    exit_index: int
    split_index: int
    device_ms: float
    transfer_ms: float
    edge_ms: float
    total_ms: float
    accuracy: float
    bandwidth_bps: float
    deadline_ms: float
    feasible: bool
    reason: str

    @property
    def config(self) -> Tuple[int, int]:
        """The ``(exit_index, split_index)`` pair."""
        return (self.exit_index, self.split_index)

    def to_dict(self) -> Dict[str, Any]:
        """Return the fields as a plain dict (floats may be inf: use ``allow_nan`` JSON)."""
        return asdict(self)


def scale_robot(problem: EdgentProblem, factor: float) -> EdgentProblem:
    """
    Return ``problem`` with every robot layer time multiplied by ``factor``.

    For a robot ``factor`` times slower (or faster) than the one profiled: the testbed emulates a
    slower robot class this way (camera ``compute_slowdown``, planner ``robot_time_scale``).
    """
    f = _number('factor', factor)
    if not (f > 0 and math.isfinite(f)):
        raise ValueError(f'robot time factor must be a finite number > 0, got {factor!r}')
    if f == 1.0:
        return problem
    return replace(problem, robot_ms={e: [x * f for x in v] for e, v in problem.robot_ms.items()})


def _make(problem: EdgentProblem, i: int, transfer: float, edge: float, total: float,
          bw: float, deadline: float, feasible: bool, reason: str) -> Decision:
    t = problem._t
    return Decision(int(t.exit_of[i]), int(t.split_of[i]), float(t.device_ms[i]), float(transfer),
                    float(edge), float(total), float(t.acc[i]), bw, deadline, feasible, reason)


def _choose(problem: EdgentProblem, policy: str, bw: float, deadline: float) -> Decision:
    t = problem._t
    mask = t.masks[policy]
    transfer, edge, total = t.breakdown(bw, problem.overhead_ms, problem.edge_queue_ms)
    ok = mask & (total <= deadline + TIE_MS) & (total < np.inf)
    if ok.any():
        acc = np.where(ok, t.acc, -1.0)
        cand = acc == acc.max()
        cand &= total <= total[cand].min() + TIE_MS
        feasible = True
    else:
        cand = mask & (total <= total[mask].min() + TIE_MS)   # inf <= inf: a dead link
        acc = np.where(cand, t.acc, -1.0)
        cand &= acc == acc.max()
        feasible = False
    idx = np.flatnonzero(cand)
    i = int(idx[np.argmin(t.rank[idx])])
    e, s, n = int(t.exit_of[i]), int(t.split_of[i]), int(t.n_of[i])
    tot = float(total[i])
    head = f'{policy}: exit {e} split {s} ({_where(s, n)})'
    if feasible:
        reason = (f'{head} predicted {tot:.3f} ms <= deadline {deadline:.3f} ms at '
                  f'{_fmt_bw(bw)}, top1 {t.acc[i]:.3f}')
        better = mask & (t.acc > t.acc[i])
        if better.any():
            reason += f'; more accurate exits need >= {float(total[better].min()):.3f} ms'
    else:
        reason = (f'{policy}: no configuration meets deadline {deadline:.3f} ms at '
                  f'{_fmt_bw(bw)}; fastest is exit {e} split {s} ({_where(s, n)}) at '
                  f'{tot:.3f} ms')
    return _make(problem, i, transfer[i], edge[i], tot, bw, deadline, feasible, reason)


def decide(problem: EdgentProblem, bandwidth_bps: float, deadline_ms: float) -> Decision:
    """
    Return the Edgent decision: the most accurate exit meeting the deadline, fastest split.

    ``bandwidth_bps`` is the uplink bandwidth (bit/s, >= 0, inf allowed; below ``LINK_DOWN_BPS``
    only device-only splits are possible), ``deadline_ms`` the end-to-end latency budget (ms,
    > 0, inf allowed). Tie rules and the infeasible case: see the module docstring. Cost: a
    handful of numpy operations over all (exit, split) pairs, tens of microseconds.
    """
    return _choose(problem, 'edgent', check_bandwidth(bandwidth_bps), check_deadline(deadline_ms))


def decide_policy(problem: EdgentProblem, policy: str, bandwidth_bps: float,
                  deadline_ms: float) -> Decision:
    """
    Return the decision of ``policy``, the Edgent rule restricted to a set of configurations.

    - ``edgent``: every (exit, split); same as ``decide``.
    - ``device-only``: every exit, run wholly on the robot (split = n).
    - ``edge-only``: the final exit (the largest index, the full model), split 0.
    - ``partition-only``: the final exit, best split (Neurosurgeon).
    - ``exit-only``: every exit, run wholly on the robot or wholly on the edge (split n or 0).

    In each, the most accurate exit meeting the deadline and its fastest allowed split; if none
    meets it, the fastest allowed configuration with ``feasible=False``.
    """
    return _choose(problem, check_policy(policy), check_bandwidth(bandwidth_bps),
                   check_deadline(deadline_ms))


def evaluate(problem: EdgentProblem, bandwidth_bps: float, exit_index: int, split_index: int,
             deadline_ms: float = math.inf) -> Decision:
    """
    Return the predicted latency of one given configuration at ``bandwidth_bps`` (bit/s).

    ``feasible`` says whether it meets ``deadline_ms`` (default: no deadline, so any finite
    latency is feasible; an offloading split on a dead link never is).
    """
    bw = check_bandwidth(bandwidth_bps)
    deadline = check_deadline(deadline_ms)
    problem.check_config(exit_index, split_index)
    t = problem._t
    i = t.offset[int(exit_index)] + int(split_index)
    if not t.offload[i]:
        transfer, edge = 0.0, 0.0
    elif bw < LINK_DOWN_BPS:
        transfer, edge = math.inf, float(t.edge_ms[i]) + problem.edge_queue_ms
    else:
        transfer = float(t.bits_k[i]) / bw + problem.overhead_ms
        edge = float(t.edge_ms[i]) + problem.edge_queue_ms
    total = float(t.device_ms[i]) + transfer + edge
    feasible = total <= deadline + TIE_MS and not math.isinf(total)
    s, n = int(split_index), int(t.n_of[i])
    reason = (f'exit {int(exit_index)} split {s} ({_where(s, n)}) predicted {total:.3f} ms '
              f'{"<=" if feasible else ">"} deadline {deadline:.3f} ms at {_fmt_bw(bw)}')
    return _make(problem, i, transfer, edge, total, bw, deadline, feasible, reason)


def brute_force(problem: EdgentProblem, bandwidth_bps: float, deadline_ms: float,
                policy: str = 'edgent') -> Decision:
    """
    Return the decision of ``policy`` by plain loops: the test oracle for ``decide_policy``.

    Written independently of the vectorized path (no shared tables): per exit, the fastest
    allowed split; then the most accurate exit whose fastest split meets the deadline, else the
    fastest exit. Same tie rules. Slow; for tests.
    """
    bw = check_bandwidth(bandwidth_bps)
    deadline = check_deadline(deadline_ms)
    check_policy(policy)
    final = max(problem.accuracy)

    def allowed(e: int, s: int, n: int) -> bool:
        if policy == 'device-only':
            return s == n
        if policy == 'edge-only':
            return e == final and s == 0
        if policy == 'partition-only':
            return e == final
        if policy == 'exit-only':
            return s in (0, n)
        return True

    def latency(e: int, s: int) -> Tuple[float, float, float, float]:
        robot, edge_layers = problem.robot_ms[e], problem.edge_ms[e]
        n = len(robot)
        device = 0.0
        for k in range(s):
            device += robot[k]
        if s == n:
            return device, 0.0, 0.0, device
        on_edge = 0.0
        for k in range(s, n):
            on_edge += edge_layers[k]
        on_edge += problem.edge_queue_ms
        if bw < LINK_DOWN_BPS:
            transfer = math.inf
        else:
            transfer = problem.split_bytes[e][s] * 8.0 / bw * 1000.0 + problem.overhead_ms
        return device, transfer, on_edge, device + transfer + on_edge

    def ties_first(a: Tuple, b: Tuple) -> bool:
        """Return True if ``a`` wins the tie-break (bytes, split, exit) against ``b``."""
        (ea, sa, ba), (eb, sb, bb) = a, b
        if ba != bb:
            return ba < bb
        if sa != sb:
            return sa > sb
        return ea < eb

    best_per_exit = []   # (exit, split, bytes, parts)
    for e in problem.accuracy:
        n = len(problem.robot_ms[e])
        best = None
        for s in range(n + 1):
            if not allowed(e, s, n):
                continue
            parts = latency(e, s)
            row = (e, s, problem.split_bytes[e][s], parts)
            if best is None or parts[3] < best[3][3] - TIE_MS or (
                    abs(parts[3] - best[3][3]) <= TIE_MS and ties_first(row[:3], best[:3])) \
                    or (math.isinf(parts[3]) and math.isinf(best[3][3])
                        and ties_first(row[:3], best[:3])):
                best = row
        if best is not None:
            best_per_exit.append(best)

    def near(x: float, y: float) -> bool:
        return x == y or abs(x - y) <= TIE_MS

    feasible = [r for r in best_per_exit
                if r[3][3] <= deadline + TIE_MS and not math.isinf(r[3][3])]
    pick = None
    if feasible:
        for r in feasible:
            if pick is None:
                pick = r
                continue
            ar, ap = problem.accuracy[r[0]], problem.accuracy[pick[0]]
            if ar > ap or (ar == ap and (r[3][3] < pick[3][3] - TIE_MS or (
                    near(r[3][3], pick[3][3]) and ties_first(r[:3], pick[:3])))):
                pick = r
    else:
        for r in best_per_exit:
            if pick is None:
                pick = r
                continue
            ar, ap = problem.accuracy[r[0]], problem.accuracy[pick[0]]
            if r[3][3] < pick[3][3] - TIE_MS or (near(r[3][3], pick[3][3]) and (
                    ar > ap or (ar == ap and ties_first(r[:3], pick[:3])))):
                pick = r
    e, s, _, (device, transfer, on_edge, total) = pick
    return Decision(e, s, device, transfer, on_edge, total, problem.accuracy[e], bw, deadline,
                    bool(feasible), f'{policy}: brute force')


def relative_change(a: float, b: float) -> float:
    """
    Return ``|a - b| / max(a, b)`` in [0, 1] for bandwidths >= 0 (0 if equal, 1 if one is inf).

    Symmetric, so +10 % and -10 % jitter around a mean differ by at most 2 * 10 / 110 = 18 %.
    """
    if a == b:
        return 0.0
    if math.isinf(a) or math.isinf(b):
        return 1.0
    return abs(a - b) / max(a, b)


@dataclass(frozen=True)
class HysteresisStep:
    """Outcome of one ``Hysteresis.update``: the decision in force, whether it changed, why."""

    decision: Decision
    switched: bool
    why: str


class Hysteresis:
    """
    Keep the configuration in force unless there is a real reason to change it.

    Each ``update`` computes the policy's fresh decision (the *candidate*) and re-evaluates the
    configuration in force (the *current*) at the new bandwidth. Rules, first match wins:

    1. nothing in force yet, or the current configuration is not valid for the problem: adopt;
    2. candidate is the current configuration: keep (numbers refreshed);
    3. the deadline changed (a user command): switch at once;
    4. the current configuration now misses the deadline and the candidate meets it: switch at
       once;
    5. the bandwidth fell below ``(1 - big_drop)`` times the bandwidth the current configuration
       was adopted at: switch at once;
    6. less than ``min_dwell_s`` since the last switch: keep;
    7. the bandwidth moved by more than ``rel_change`` (``relative_change``) since adoption:
       switch;
    8. the candidate is more accurate, and it would still meet the deadline if the bandwidth fell
       by ``rel_change``: switch (this margin is what stops ping-pong at a feasibility boundary:
       jitter smaller than ``rel_change`` cannot make it infeasible again);
    9. otherwise keep.

    Pure: time (``now_s``, seconds, any monotonic clock) is passed in and must not go backwards.
    """

    def __init__(self, rel_change: float = 0.2, big_drop: float = 0.5, min_dwell_s: float = 2.0,
                 policy: str = 'edgent'):
        for name, v in (('rel_change', rel_change), ('big_drop', big_drop)):
            if not 0.0 < _number(name, v) < 1.0:
                raise ValueError(f'{name} must be a fraction in (0, 1), got {v!r}')
        self.rel_change = float(rel_change)
        self.big_drop = float(big_drop)
        self.min_dwell_s = _finite_nonneg('min_dwell_s', min_dwell_s)
        self.policy = check_policy(policy)
        self.reset()

    def reset(self) -> None:
        """Forget the configuration in force (e.g. after a clock jump or a model change)."""
        self._current: Optional[Decision] = None
        self._ref_bw = 0.0
        self._ref_deadline = 0.0
        self._since_s = -math.inf
        self._last_s = -math.inf

    @property
    def current(self) -> Optional[Decision]:
        """The decision in force, as last evaluated (None before the first update)."""
        return self._current

    def _adopt(self, now_s: float, d: Decision, why: str) -> HysteresisStep:
        self._current = d
        self._ref_bw = d.bandwidth_bps
        self._ref_deadline = d.deadline_ms
        self._since_s = now_s
        return HysteresisStep(d, True, why)

    def _keep(self, d: Decision, why: str) -> HysteresisStep:
        self._current = d
        return HysteresisStep(d, False, why)

    def update(self, now_s: float, problem: EdgentProblem, bandwidth_bps: float,
               deadline_ms: float) -> HysteresisStep:
        """Return the decision in force at ``now_s`` (s) for a bandwidth (bps), deadline (ms)."""
        now = _number('now_s', now_s)
        if not math.isfinite(now) or now < self._last_s:
            raise ValueError(f'now_s must be finite and not earlier than the last update '
                             f'({self._last_s}), got {now_s!r}')
        self._last_s = now
        cand = decide_policy(problem, self.policy, bandwidth_bps, deadline_ms)
        bw, deadline = cand.bandwidth_bps, cand.deadline_ms
        cur = self._current
        if cur is None:
            return self._adopt(now, cand, 'initial choice')
        try:
            cur_now = evaluate(problem, bw, cur.exit_index, cur.split_index, deadline)
        except ValueError:
            return self._adopt(now, cand, 'current configuration not valid for this problem')
        if cand.config == cur.config:
            return self._keep(cand, 'candidate is the current configuration')
        if deadline != self._ref_deadline:
            return self._adopt(now, cand, f'deadline changed from {self._ref_deadline:g} ms '
                                          f'to {deadline:g} ms')
        if cand.feasible and not cur_now.feasible:
            return self._adopt(now, cand, f'current exit {cur.exit_index} split '
                                          f'{cur.split_index} now needs {cur_now.total_ms:.3f} '
                                          f'ms > deadline {deadline:g} ms')
        if bw < (1.0 - self.big_drop) * self._ref_bw:
            return self._adopt(now, cand, f'bandwidth dropped from {_fmt_bw(self._ref_bw)} '
                                          f'to {_fmt_bw(bw)}')
        if now - self._since_s < self.min_dwell_s:
            return self._keep(cur_now, f'dwell: {now - self._since_s:.3f} s since last switch '
                                       f'< {self.min_dwell_s:g} s')
        moved = relative_change(bw, self._ref_bw)
        if moved > self.rel_change:
            return self._adopt(now, cand, f'bandwidth moved {100 * moved:.0f} % '
                                          f'(from {_fmt_bw(self._ref_bw)} to {_fmt_bw(bw)})')
        if cand.feasible and cand.accuracy > cur_now.accuracy:
            low = evaluate(problem, bw * (1.0 - self.rel_change), cand.exit_index,
                           cand.split_index, deadline)
            if low.feasible:
                return self._adopt(now, cand, f'exit {cand.exit_index} is more accurate and '
                                              f'meets the deadline even at '
                                              f'-{100 * self.rel_change:.0f} % bandwidth')
        return self._keep(cur_now, 'no reason to switch')
