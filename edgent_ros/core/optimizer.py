"""
Online phase of Edgent: pick the exit and the split that maximize accuracy under a deadline.

For branch ``e`` (``n`` layers) cut at split ``s`` in ``[0, n]``, layers ``[0, s)`` run on the
robot, the tensor at the cut crosses the uplink, layers ``[s, n)`` run on the edge. The predicted
end-to-end latency (ms) is::

    robot_prefix[s] + (8000 * wire(bytes[s]) / bandwidth_bps + overhead_ms  if s < n else 0)
                    + (edge_suffix[s] + edge_queue_ms                 if s < n else 0)

``s == n`` is device-only: nothing is sent, so neither the link nor the edge is involved.
``wire(b)`` is the bytes the message takes on the link: ``b`` plus ``message_bytes`` of headers
and message fields per message (``core.link.wire_bytes``; 390 B measured for a Tensor over Fast
DDS, BENCHMARKS.md section 11, the default of ``from_model``: 62 ms at 50 kbit/s, which decides
between a 256-byte bottleneck and a 1 KB JPEG frame); ``message_bytes=0`` is the paper's model.
On a token-bucket shaper a message of at most ``link_burst_bytes`` on the wire crosses at once
after an idle gap (``burst_wire``; default 0, no such shaper).

**Encodings** (a third dimension, off unless a problem is given ``variants``): besides the
fp32/raw tensor, a cut may send the tensor encoded (``core.codec``: fp16, int8, int8-zlib,
zlib; PNG or JPEG for the frame at split 0). Each variant of ``(exit, split)`` has its own
measured top-1 (lossy encodings change it), payload bytes and codec cost (encode on the robot,
decode on the edge, added to those sides). A configuration is then ``(exit, split, encoding)``
and the rule below runs over all of them: the optimizer trades bytes against accuracy. The
baseline policies keep the paper's raw tensors.

Decision rule (``decide``, the Edgent paper's): among all configurations whose predicted latency
meets the deadline (``total_ms <= deadline_ms``), take the most accurate exit and its fastest
split. Ties are broken deterministically, in this order:

1. equal accuracy (two exits): the lower latency;
2. equal latency (within ``TIE_MS``): fewer payload bytes on the link (device-only sends 0, so it
   wins a tie: no dependence on the link or the edge), then the larger split (more work on the
   robot, less load on a shared edge), then the smaller exit index, then raw before encoded.

If nothing meets the deadline the decision is the fastest configuration overall (ties: the more
accurate exit, then rule 2), with ``feasible=False`` and a reason giving the numbers. A bandwidth
below ``LINK_DOWN_BPS`` (a dead link) makes every configuration that sends something infinitely
slow, so only device-only splits remain.

The same machinery serves the baselines of the evaluation (``decide_policy``): each policy is the
same rule restricted to a subset of configurations. ``Hysteresis`` keeps a planner from flapping
between configurations when the bandwidth estimate jitters.

This module never imports rclpy nor torch: ``EdgentProblem.from_model`` needs only the network
as data (``core.arch``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
import math
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .arch import EXIT_ATTACH, NUM_EXITS, split_payload_bytes
from .codec import applies, bottleneck_width, ENCODINGS, known_encoding
from .link import MESSAGE_OVERHEAD_BYTES, wire_bytes
from .validate import as_nonneg, as_number

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
# moment (set from outside, e.g. by the testbed that shapes the link), no estimate, no hysteresis;
# and 'fixed': one configuration pinned by the user (planner.FIXED_HELP), predictions still made.
PLANNER_POLICIES = POLICIES + ('true-bandwidth', 'fixed')


def check_bandwidth(bandwidth_bps: Any) -> float:
    """Return ``bandwidth_bps`` (bit/s) as float; raise ValueError unless it is >= 0 (inf ok)."""
    bw = as_number('bandwidth_bps', bandwidth_bps)
    if math.isnan(bw) or bw < 0.0:
        raise ValueError(f'bandwidth_bps must be >= 0 (finite or +inf), got {bandwidth_bps!r}')
    return bw


def check_deadline(deadline_ms: Any) -> float:
    """Return ``deadline_ms`` (ms) as float; raise ValueError unless > 0 (inf: no deadline)."""
    d = as_number('deadline_ms', deadline_ms)
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


def burst_wire(wire: int, burst_bytes: int) -> int:
    """
    Return the bytes a message of ``wire`` bytes waits for on a shaper with this burst.

    A message that fits in the burst crosses at once after an idle gap (0). A larger one is
    planned at its full size, not less the burst: it drains the bucket, and when frames come
    back to back, or the link's control traffic (outcomes, link reports, acknowledgements) uses
    it between them, the bucket holds less than the burst when the next one is sent.
    """
    return 0 if 0 < wire <= burst_bytes else wire


class _Tables:
    """
    Flat per-configuration arrays of one problem: entry ``i`` is one (exit, split, encoding).

    Entries ``offset[e] + s`` are the raw configurations of exit ``e``; encoded variants follow
    all raw entries (``index`` maps every ``(exit, split, encoding)`` to its entry).
    """

    def __init__(self, accuracy: Dict[int, float], robot: Dict[int, List[float]],
                 edge: Dict[int, List[float]], nbytes: Dict[int, List[int]],
                 variants: Optional[Dict[Tuple[int, int], List['Variant']]] = None,
                 message_bytes: int = 0, burst_bytes: int = 0):
        exit_of, split_of, n_of, acc, dev, suf, link = [], [], [], [], [], [], []
        enc_of: List[str] = []
        self.offset: Dict[int, int] = {}
        prefix: Dict[int, np.ndarray] = {}
        suffix: Dict[int, np.ndarray] = {}
        for e in sorted(accuracy):
            n = len(robot[e])
            self.offset[e] = len(exit_of)
            exit_of += [e] * (n + 1)
            split_of += list(range(n + 1))
            n_of += [n] * (n + 1)
            acc += [accuracy[e]] * (n + 1)
            enc_of += ['raw'] * (n + 1)
            # prefix[s] = robot time of layers [0, s); suffix[s] = edge time of layers [s, n)
            prefix[e] = np.concatenate(([0.0], np.cumsum(np.asarray(robot[e], dtype=float))))
            rev = np.cumsum(np.asarray(edge[e], dtype=float)[::-1])[::-1]
            suffix[e] = np.concatenate((rev, [0.0]))
            dev.append(prefix[e])
            suf.append(suffix[e])
            link += list(nbytes[e])
        dev_extra: List[float] = []
        edge_extra: List[float] = []
        for (e, s_), vs in sorted((variants or {}).items()):
            for v in vs:
                exit_of.append(e)
                split_of.append(s_)
                n_of.append(len(robot[e]))
                acc.append(v.accuracy)
                enc_of.append(v.encoding)
                dev_extra.append(prefix[e][s_] + v.encode_ms)
                edge_extra.append(suffix[e][s_] + v.decode_ms)
                link.append(v.nbytes)
        self.exit_of = np.asarray(exit_of, dtype=np.int64)
        self.split_of = np.asarray(split_of, dtype=np.int64)
        self.n_of = np.asarray(n_of, dtype=np.int64)
        self.acc = np.asarray(acc, dtype=float)
        self.encoding_of = list(enc_of)
        self.device_ms = np.concatenate(dev + [np.asarray(dev_extra, dtype=float)])
        self.edge_ms = np.concatenate(suf + [np.asarray(edge_extra, dtype=float)])
        self.link_bytes = np.asarray(link, dtype=np.int64)
        wire = np.asarray([burst_wire(wire_bytes(int(b), message_bytes), burst_bytes) if b else 0
                           for b in self.link_bytes], dtype=float)
        self.bits_k = wire * 8000.0   # transfer ms = bits_k / bps
        self.offload = self.split_of < self.n_of
        self.raw = np.asarray([x == 'raw' for x in enc_of], dtype=bool)
        self.index = {(int(e), int(sp), x): i
                      for i, (e, sp, x) in enumerate(zip(exit_of, split_of, enc_of))}
        # Static tie-break rank (rule 2): fewer bytes, then larger split, then smaller exit,
        # then raw before encoded variants (in the order they were given).
        enc_rank = np.arange(len(enc_of)) * ~self.raw
        order = np.lexsort((enc_rank, self.exit_of, -self.split_of, self.link_bytes))
        self.rank = np.empty(len(order), dtype=np.int64)
        self.rank[order] = np.arange(len(order))
        final = int(self.exit_of.max())
        self.final_exit = final
        self.masks = {
            'edgent': np.ones(len(order), dtype=bool),
            'device-only': ~self.offload & self.raw,
            'edge-only': (self.exit_of == final) & (self.split_of == 0) & self.raw,
            'partition-only': (self.exit_of == final) & self.raw,
            'exit-only': ((self.split_of == 0) | ~self.offload) & self.raw,
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
class Variant:
    """
    One encoded way to send the tensor of an ``(exit, split)`` cut (``split < n``).

    ``accuracy``: measured top-1 with this encoding; ``nbytes``: payload bytes (mean for
    size-varying encodings); ``encode_ms``/``decode_ms``: codec time added on the robot / edge.
    """

    encoding: str
    accuracy: float
    nbytes: int
    encode_ms: float = 0.0
    decode_ms: float = 0.0


@dataclass(frozen=True)
class EdgentProblem:
    """
    Everything the online phase needs for one model: accuracies, latencies and payloads.

    Exits are positive integers (1..NUM_EXITS for the shipped model); every dict has the same
    keys. For exit ``e`` with ``n`` layers: ``robot_ms[e]`` and ``edge_ms[e]`` hold the predicted
    latency (ms) of each layer on the robot and on the edge (length ``n``), ``split_bytes[e]`` the
    payload (bytes) crossing the link at split ``s = 0..n`` (length ``n + 1``, last entry 0:
    device-only sends nothing). ``overhead_ms`` is added to the transfer of every offloaded frame
    (``s < n``), ``edge_queue_ms`` (edge load) to its edge time, ``message_bytes`` (per message
    on the link, ``core.link.wire_bytes``; 0: the payload alone) to its bytes.
    ``link_burst_bytes``: a token-bucket shaper's burst; a message that fits in it is planned
    as crossing at once (``burst_wire``; 0, the default: no such shaper, the paper's model).
    ``variants``
    (optional) maps
    ``(exit, split)`` with ``split < n`` to encoded alternatives (``Variant``) of its raw tensor;
    without it every cut sends the raw tensor (the paper's Edgent).

    Frozen: to change the overhead or the edge load, use ``dataclasses.replace``, which validates
    again. The inputs are copied, so later changes to the caller's dicts do not leak in.
    """

    accuracy: Dict[int, float]
    robot_ms: Dict[int, List[float]]
    edge_ms: Dict[int, List[float]]
    split_bytes: Dict[int, List[int]]
    overhead_ms: float
    edge_queue_ms: float = 0.0
    variants: Optional[Dict[Tuple[int, int], Tuple[Variant, ...]]] = None
    message_bytes: int = 0
    link_burst_bytes: int = 0
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
        object.__setattr__(self, 'overhead_ms', as_nonneg('overhead_ms', self.overhead_ms))
        object.__setattr__(self, 'edge_queue_ms',
                           as_nonneg('edge_queue_ms', self.edge_queue_ms))
        variants = self._check_variants(self.variants, robot)
        object.__setattr__(self, 'variants', variants)
        mb = as_nonneg('message_bytes', self.message_bytes)
        if mb != int(mb):
            raise ValueError(f'message_bytes must be a whole number of bytes, got '
                             f'{self.message_bytes!r}')
        object.__setattr__(self, 'message_bytes', int(mb))
        burst = as_nonneg('link_burst_bytes', self.link_burst_bytes)
        if burst != int(burst):
            raise ValueError(f'link_burst_bytes must be a whole number of bytes, got '
                             f'{self.link_burst_bytes!r}')
        object.__setattr__(self, 'link_burst_bytes', int(burst))
        object.__setattr__(self, '_t', _Tables(acc, robot, edge, nbytes, variants, int(mb),
                                               int(burst)))

    @staticmethod
    def _check_variants(variants: Any, robot: Dict[int, List[float]]
                        ) -> Optional[Dict[Tuple[int, int], Tuple[Variant, ...]]]:
        if variants is None:
            return None
        if not isinstance(variants, Mapping):
            raise ValueError(f'variants must be a dict {{(exit, split): [Variant, ...]}}, got '
                             f'{type(variants).__name__}')
        out = {}
        for key, vs in variants.items():
            if not (isinstance(key, tuple) and len(key) == 2 and key[0] in robot
                    and isinstance(key[1], (int, np.integer))
                    and 0 <= key[1] < len(robot[key[0]])):
                raise ValueError(f'variants: key {key!r} is not an offloading (exit, split) cut')
            seen = {'raw'}
            checked = []
            for v in vs:
                if not isinstance(v, Variant):
                    raise ValueError(f'variants[{key}] must hold Variant objects, got {v!r}')
                if not isinstance(v.encoding, str) or v.encoding in seen:
                    raise ValueError(f'variants[{key}]: encoding {v.encoding!r} is raw, '
                                     'repeated or not a name')
                seen.add(v.encoding)
                a = as_number(f'variants[{key}] {v.encoding} accuracy', v.accuracy)
                if not 0.0 <= a <= 1.0:
                    raise ValueError(f'variants[{key}] {v.encoding}: accuracy must be a top-1 '
                                     f'in [0, 1], got {v.accuracy!r}')
                nb = as_nonneg(f'variants[{key}] {v.encoding} nbytes', v.nbytes)
                checked.append(Variant(v.encoding, a, int(math.ceil(nb)),
                                       as_nonneg('encode_ms', v.encode_ms),
                                       as_nonneg('decode_ms', v.decode_ms)))
            out[(int(key[0]), int(key[1]))] = tuple(checked)
        return out

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
            v = as_number(f'accuracy[{e}]', a)
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
            out[e] = [as_nonneg(f'{name}[{e}][{i}]', v) for i, v in enumerate(row)]
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
            v = as_nonneg(f'{name}[{s}]', b)
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
                   edge_queue_ms: float = 0.0, encodings: Sequence[str] = ('raw',),
                   encoding_table: Optional[Mapping[Tuple[int, int, str], Any]] = None,
                   confidence_threshold: float = 0.0,
                   confidence_table: Optional[Mapping[int, Sequence[Mapping[str, Any]]]] = None,
                   message_bytes: int = MESSAGE_OVERHEAD_BYTES) -> 'EdgentProblem':
        """
        Build the problem of the multi-exit AlexNet ``cfg`` (``core.arch``).

        ``latency_models`` is duck-typed: ``branch_layer_ms(host, cfg, exit_index)`` returns the
        predicted per-layer latency (ms) of a branch on ``host`` ('robot' or 'edge').
        ``bytes_per_element`` is the wire size of an activation element (4 fp32, 2 fp16, 1 int8).
        ``encodings`` other than raw become variants of every cut they fit, with their top-1,
        bytes and codec times from ``encoding_table`` (``artifacts.load_encodings``: required
        then; a missing row is an error naming it).

        ``confidence_threshold`` > 0 (nats) plans for BranchyNet early exit: exit ``E``'s top-1
        becomes the cascade's at that threshold (``confidence_table``,
        ``artifacts.load_confidence``, interpolated between measured thresholds), and every side
        exit ``e < E`` adds its head's time to the layer it attaches after, on whichever host
        runs that layer: the prediction is the worst case (no frame leaves early), so a planned
        deadline holds for every frame; frames that do leave early only finish sooner.

        ``message_bytes``: per-message bytes on the link besides the payload (default: a Tensor
        over Fast DDS, measured); 0 for the paper's payload-only transfer model.
        """
        robot, edge, nbytes = {}, {}, {}
        for e in range(1, NUM_EXITS + 1):
            robot[e] = list(latency_models.branch_layer_ms('robot', cfg, e))
            edge[e] = list(latency_models.branch_layer_ms('edge', cfg, e))
            nbytes[e] = [split_payload_bytes(cfg, e, s, bytes_per_element)
                         for s in range(len(robot[e]) + 1)]
        accuracy = dict(accuracy)
        variants = encoding_variants(robot, encodings, encoding_table, accuracy)
        threshold = as_nonneg('confidence_threshold', confidence_threshold)
        if threshold > 0:
            if confidence_table is None:
                raise ValueError('confidence_threshold > 0 needs the confidence table '
                                 '(edgent-ros accuracy)')
            head = {h: {e: sum(latency_models.branch_layer_ms(h, cfg, e)[a:])
                        for e, a in EXIT_ATTACH.items()} for h in ('robot', 'edge')}
            for e in range(2, NUM_EXITS + 1):
                for side, a in EXIT_ATTACH.items():
                    if side < e:
                        robot[e][a - 1] += head['robot'][side]
                        edge[e][a - 1] += head['edge'][side]
            cascade = {e: cascade_top1(confidence_table[e], threshold) for e in accuracy}
            if variants:   # an encoding's measured loss carries over to the cascade
                variants = {(e, s): tuple(replace(v, accuracy=min(1.0, max(
                    0.0, v.accuracy - accuracy[e] + cascade[e]))) for v in vs)
                    for (e, s), vs in variants.items()}
            accuracy = cascade
        return cls(accuracy, robot, edge, nbytes, overhead_ms, edge_queue_ms, variants,
                   message_bytes)

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
    encoding: str = 'raw'   # how the tensor crosses the link ('raw' also for device-only)

    @property
    def config(self) -> Tuple[int, int]:
        """The ``(exit_index, split_index)`` pair."""
        return (self.exit_index, self.split_index)

    @property
    def key(self) -> Tuple[int, int, str]:
        """The full configuration ``(exit_index, split_index, encoding)``."""
        return (self.exit_index, self.split_index, self.encoding)

    def to_dict(self) -> Dict[str, Any]:
        """Return the fields as a plain dict (floats may be inf: use ``allow_nan`` JSON)."""
        return asdict(self)


def scale_robot(problem: EdgentProblem, factor: float) -> EdgentProblem:
    """
    Return ``problem`` with every robot layer time multiplied by ``factor``.

    A learned bottleneck's encoder is robot compute too, so its ``encode_ms`` scales with it.

    For a robot ``factor`` times slower (or faster) than the one profiled: the testbed emulates a
    slower robot class this way (camera ``compute_slowdown``, planner ``robot_time_scale``).
    """
    f = as_number('factor', factor)
    if not (f > 0 and math.isfinite(f)):
        raise ValueError(f'robot time factor must be a finite number > 0, got {factor!r}')
    if f == 1.0:
        return problem
    return replace(problem, robot_ms={e: [x * f for x in v] for e, v in problem.robot_ms.items()},
                   variants=_scale_encoders(problem.variants, f))


def _scale_encoders(variants, f: float):
    """Scale the robot-side cost of bottleneck variants (their encoder is robot compute)."""
    if variants is None:
        return None
    return {k: tuple(replace(v, encode_ms=v.encode_ms * f)
                     if bottleneck_width(v.encoding) is not None else v for v in vs)
            for k, vs in variants.items()}


def scale_edge(problem: EdgentProblem, factor: float) -> EdgentProblem:
    """
    Return ``problem`` with every edge layer time multiplied by ``factor``.

    For an edge that batches: a frame computed in a batch of ``b`` waits for the whole batch,
    ``LatencyModels.batch_factor('edge', b)`` times one frame's time.
    """
    f = as_number('factor', factor)
    if not (f > 0 and math.isfinite(f)):
        raise ValueError(f'edge time factor must be a finite number > 0, got {factor!r}')
    if f == 1.0:
        return problem
    return replace(problem, edge_ms={e: [x * f for x in v] for e, v in problem.edge_ms.items()})


def calibrate(problem: EdgentProblem, device_factor: float, offload_factor: float
              ) -> EdgentProblem:
    """
    Return ``problem`` with robot time x ``device_factor`` and the offloaded part x the other.

    The offloaded part is transfer + edge: edge layers, decode cost and the per-message overhead
    are scaled here; the caller divides the bandwidth it plans with by ``offload_factor`` (the
    transfer's bytes / bandwidth term), so every offloaded frame's link + edge time is exactly
    ``offload_factor`` times the model's (``calibration.LatencyCalibration`` gives the factors).
    """
    for name, f in (('device_factor', device_factor), ('offload_factor', offload_factor)):
        v = as_number(name, f)
        if not (v > 0 and math.isfinite(v)):
            raise ValueError(f'{name} must be a finite number > 0, got {f!r}')
    if device_factor == 1.0 and offload_factor == 1.0:
        return problem
    fd, fo = float(device_factor), float(offload_factor)
    variants = None if problem.variants is None else {
        k: tuple(replace(v, decode_ms=v.decode_ms * fo) for v in vs)
        for k, vs in _scale_encoders(problem.variants, fd).items()}
    return replace(problem, robot_ms={e: [x * fd for x in v] for e, v in problem.robot_ms.items()},
                   edge_ms={e: [x * fo for x in v] for e, v in problem.edge_ms.items()},
                   overhead_ms=problem.overhead_ms * fo, variants=variants)


def _make(problem: EdgentProblem, i: int, transfer: float, edge: float, total: float,
          bw: float, deadline: float, feasible: bool, reason: str) -> Decision:
    t = problem._t
    return Decision(int(t.exit_of[i]), int(t.split_of[i]), float(t.device_ms[i]), float(transfer),
                    float(edge), float(total), float(t.acc[i]), bw, deadline, feasible, reason,
                    t.encoding_of[i])


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
    enc = '' if t.raw[i] else f' {t.encoding_of[i]}'
    head = f'{policy}: exit {e} split {s}{enc} ({_where(s, n)})'
    if feasible:
        reason = (f'{head} predicted {tot:.3f} ms <= deadline {deadline:.3f} ms at '
                  f'{_fmt_bw(bw)}, top1 {t.acc[i]:.3f}')
        better = mask & (t.acc > t.acc[i])
        if better.any():
            reason += f'; more accurate exits need >= {float(total[better].min()):.3f} ms'
    else:
        reason = (f'{policy}: no configuration meets deadline {deadline:.3f} ms at '
                  f'{_fmt_bw(bw)}; fastest is exit {e} split {s}{enc} ({_where(s, n)}) at '
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
             deadline_ms: float = math.inf, encoding: str = 'raw') -> Decision:
    """
    Return the predicted latency of one given configuration at ``bandwidth_bps`` (bit/s).

    ``feasible`` says whether it meets ``deadline_ms`` (default: no deadline, so any finite
    latency is feasible; an offloading split on a dead link never is). ``encoding`` must be one
    of the problem's variants of that cut (raw always is; device-only is always raw).
    """
    bw = check_bandwidth(bandwidth_bps)
    deadline = check_deadline(deadline_ms)
    problem.check_config(exit_index, split_index)
    t = problem._t
    n_e = int(t.n_of[t.offset[int(exit_index)]])
    key = (int(exit_index), int(split_index), 'raw' if int(split_index) == n_e else encoding)
    if key not in t.index:
        raise ValueError(f'encoding {encoding!r} is not a variant of exit {exit_index} split '
                         f'{split_index} in this problem')
    i = t.index[key]
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
    enc = '' if t.raw[i] else f' {t.encoding_of[i]}'
    reason = (f'exit {int(exit_index)} split {s}{enc} ({_where(s, n)}) predicted {total:.3f} ms '
              f'{"<=" if feasible else ">"} deadline {deadline:.3f} ms at {_fmt_bw(bw)}')
    return _make(problem, i, transfer, edge, total, bw, deadline, feasible, reason)


def cascade_top1(rows: Sequence[Mapping[str, Any]], threshold: float) -> float:
    """
    Return the cascade top-1 at ``threshold`` from measured ``{threshold, top1}`` rows.

    Linear between the measured thresholds, clamped to the first/last outside them.
    """
    pts = sorted((float(r['threshold']), float(r['top1'])) for r in rows)
    if not pts:
        raise ValueError('empty confidence table')
    xs = [x for x, _ in pts]
    return float(np.interp(float(threshold), xs, [y for _, y in pts]))


def encoding_variants(robot_ms: Mapping[int, Sequence[float]], encodings: Sequence[str],
                      table: Optional[Mapping[Tuple[int, int, str], Any]],
                      accuracy: Optional[Mapping[int, float]] = None
                      ) -> Optional[Dict[Tuple[int, int], Tuple[Variant, ...]]]:
    """
    Return the ``variants`` of a problem for ``encodings`` from a measured encoding table.

    ``table[(exit, split, encoding)]`` has ``top1``, ``bytes_mean``, ``encode_ms``,
    ``decode_ms`` (``artifacts.EncodingCost``). Each encoding goes to every cut it fits (image
    encodings at split 0, feature encodings at 0 < split < n, a bottleneck ``bn<c>`` at the cuts
    the table has it for); ``('raw',)`` gives None. With
    ``accuracy`` (the exits' lossless top-1), a variant is never credited above its exit's: a
    quantized tensor measured 0.02 points "better" on 10,000 images is noise, and crediting it
    would make the planner prefer a slower encoded cut over the raw frame.
    """
    extra = [x for x in dict.fromkeys(encodings) if x != 'raw']
    for x in extra:
        if not known_encoding(x):
            raise ValueError(f'unknown encoding {x!r}; known: {sorted(ENCODINGS)} and bn<c>')
    for x in extra:
        if bottleneck_width(x) is not None and table is not None \
                and not any(k[2] == x for k in table):
            raise ValueError(f'encoding {x} has no bottleneck in the encoding table '
                             '(edgent-ros train-bottleneck measures them)')
    if not extra:
        return None
    if table is None:
        raise ValueError(f'encodings {extra} need the measured encoding table '
                         '(edgent-ros accuracy)')
    out: Dict[Tuple[int, int], Tuple[Variant, ...]] = {}
    for e, layers in robot_ms.items():
        for s in range(len(layers)):
            vs = []
            for x in extra:
                if not applies(x, image=(s == 0)):
                    continue
                row = table.get((e, s, x))
                if row is None and bottleneck_width(x) is not None:
                    continue   # a bottleneck exists at a few cuts only
                if row is None:
                    raise ValueError(f'encoding table has no row for exit {e} split {s} {x}')
                top1 = row.top1 if accuracy is None else min(row.top1, accuracy[e])
                vs.append(Variant(x, top1, row.bytes_mean, row.encode_ms, row.decode_ms))
            if vs:
                out[(e, s)] = tuple(vs)
    return out


def brute_force(problem: EdgentProblem, bandwidth_bps: float, deadline_ms: float,
                policy: str = 'edgent') -> Decision:
    """
    Return the decision of ``policy`` by plain loops: the test oracle for ``decide_policy``.

    Written independently of the vectorized path (no shared tables): enumerate every allowed
    (exit, split, encoding) with its latency from the per-layer lists; among those meeting the
    deadline the most accurate, then the fastest; if none, the fastest, then the most accurate;
    then the tie rule (bytes, larger split, smaller exit, raw before variants). Slow; for tests.
    """
    bw = check_bandwidth(bandwidth_bps)
    deadline = check_deadline(deadline_ms)
    check_policy(policy)
    final = max(problem.accuracy)
    variants = problem.variants or {}

    def allowed(e: int, s: int, n: int, raw: bool) -> bool:
        if policy == 'edgent':
            return True
        if not raw:
            return False
        if policy == 'device-only':
            return s == n
        if policy == 'edge-only':
            return e == final and s == 0
        if policy == 'partition-only':
            return e == final
        return s in (0, n)   # exit-only

    def latency(e: int, s: int, nbytes: int, enc_ms: float, dec_ms: float
                ) -> Tuple[float, float, float, float]:
        robot, edge_layers = problem.robot_ms[e], problem.edge_ms[e]
        n = len(robot)
        device = 0.0
        for k in range(s):
            device += robot[k]
        if s == n:
            return device, 0.0, 0.0, device
        device += enc_ms
        on_edge = dec_ms
        for k in range(s, n):
            on_edge += edge_layers[k]
        on_edge += problem.edge_queue_ms
        if bw < LINK_DOWN_BPS:
            transfer = math.inf
        else:
            wire = nbytes
            if problem.message_bytes and nbytes:
                datagram = nbytes + problem.message_bytes - 34
                wire = nbytes + problem.message_bytes + 34 * (math.ceil(datagram / 1480) - 1)
            if nbytes:
                wire = burst_wire(wire, problem.link_burst_bytes)
            transfer = wire * 8.0 / bw * 1000.0 + problem.overhead_ms
        return device, transfer, on_edge, device + transfer + on_edge

    cands = []   # (accuracy, total, tie key, exit, split, encoding, parts)
    for e in problem.accuracy:
        n = len(problem.robot_ms[e])
        for s in range(n + 1):
            options = [('raw', problem.accuracy[e], problem.split_bytes[e][s], 0.0, 0.0, 0)]
            for k, v in enumerate(variants.get((e, s), ())):
                options.append((v.encoding, v.accuracy, v.nbytes, v.encode_ms, v.decode_ms,
                                k + 1))
            for enc, acc, nbytes, enc_ms, dec_ms, order in options:
                if not allowed(e, s, n, enc == 'raw'):
                    continue
                parts = latency(e, s, nbytes, enc_ms, dec_ms)
                cands.append((acc, parts[3], (nbytes, -s, e, order), e, s, enc, parts))

    def near(x: float, y: float) -> bool:
        return x == y or abs(x - y) <= TIE_MS

    ok = [c for c in cands if c[1] <= deadline + TIE_MS and not math.isinf(c[1])]
    pick = None
    for c in (ok or cands):
        if pick is None:
            pick = c
            continue
        if ok:
            better = c[0] > pick[0] or (c[0] == pick[0] and (
                c[1] < pick[1] - TIE_MS or (near(c[1], pick[1]) and c[2] < pick[2])))
        else:
            better = (c[1] < pick[1] - TIE_MS and not near(c[1], pick[1])) or (
                near(c[1], pick[1]) and (c[0] > pick[0] or (c[0] == pick[0] and c[2] < pick[2])))
        if better:
            pick = c
    acc, _, _, e, s, enc, (device, transfer, on_edge, total) = pick
    return Decision(e, s, device, transfer, on_edge, total, acc, bw, deadline, bool(ok),
                    f'{policy}: brute force', enc)


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
    4b. the current configuration still meets the deadline and the candidate is not more
       accurate: keep (configurations of equal accuracy differ only in latency, and both are on
       time: flipping between them as the estimate jitters buys nothing);
    5. the bandwidth fell below ``(1 - big_drop)`` times the bandwidth the current configuration
       was adopted at: switch at once;
    6. less than ``min_dwell_s`` since the last switch: keep;
    7. the bandwidth moved by more than ``rel_change`` (``relative_change``) since adoption:
       switch;
    8. the candidate is more accurate, and it would still meet the deadline if the bandwidth fell
       by ``rel_change``: switch (this margin is what stops ping-pong at a feasibility boundary:
       jitter smaller than ``rel_change`` cannot make it infeasible again);
    9. otherwise keep.

    ``update`` decides with ``decide_policy`` and judges the current configuration with
    ``evaluate`` unless given other functions of the same signatures (``chance``: the
    on-time-probability rule), so "meets the deadline" is whatever the caller's rule says.

    Pure: time (``now_s``, seconds, any monotonic clock) is passed in and must not go backwards.
    """

    def __init__(self, rel_change: float = 0.2, big_drop: float = 0.5, min_dwell_s: float = 2.0,
                 policy: str = 'edgent'):
        for name, v in (('rel_change', rel_change), ('big_drop', big_drop)):
            if not 0.0 < as_number(name, v) < 1.0:
                raise ValueError(f'{name} must be a fraction in (0, 1), got {v!r}')
        self.rel_change = float(rel_change)
        self.big_drop = float(big_drop)
        self.min_dwell_s = as_nonneg('min_dwell_s', min_dwell_s)
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
               deadline_ms: float, choose: Optional[Callable[..., Decision]] = None,
               judge: Optional[Callable[..., Decision]] = None) -> HysteresisStep:
        """
        Return the decision in force at ``now_s`` (s) for a bandwidth (bps), deadline (ms).

        ``choose(problem, policy, bw, deadline)`` and ``judge(problem, bw, exit, split,
        deadline, encoding)`` replace ``decide_policy`` and ``evaluate`` when given.
        """
        now = as_number('now_s', now_s)
        if not math.isfinite(now) or now < self._last_s:
            raise ValueError(f'now_s must be finite and not earlier than the last update '
                             f'({self._last_s}), got {now_s!r}')
        self._last_s = now
        evaluate_ = judge or evaluate
        cand = (choose or decide_policy)(problem, self.policy, bandwidth_bps, deadline_ms)
        bw, deadline = cand.bandwidth_bps, cand.deadline_ms
        cur = self._current
        if cur is None:
            return self._adopt(now, cand, 'initial choice')
        try:
            cur_now = evaluate_(problem, bw, cur.exit_index, cur.split_index, deadline,
                                cur.encoding)
        except ValueError:
            return self._adopt(now, cand, 'current configuration not valid for this problem')
        if cand.key == cur.key:
            return self._keep(cand, 'candidate is the current configuration')
        if deadline != self._ref_deadline:
            return self._adopt(now, cand, f'deadline changed from {self._ref_deadline:g} ms '
                                          f'to {deadline:g} ms')
        if cand.feasible and not cur_now.feasible:
            return self._adopt(now, cand, f'current exit {cur.exit_index} split '
                                          f'{cur.split_index} {cur.encoding} now needs '
                                          f'{cur_now.total_ms:.3f} ms > deadline {deadline:g} ms')
        if cur_now.feasible and cand.accuracy <= cur_now.accuracy:
            return self._keep(cur_now, f'current exit {cur.exit_index} split {cur.split_index} '
                                       f'{cur.encoding} still meets the deadline and the '
                                       f'candidate is not more accurate')
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
            low = evaluate_(problem, bw * (1.0 - self.rel_change), cand.exit_index,
                            cand.split_index, deadline, cand.encoding)
            if low.feasible:
                return self._adopt(now, cand, f'exit {cand.exit_index} is more accurate and '
                                              f'meets the deadline even at '
                                              f'-{100 * self.rel_change:.0f} % bandwidth')
        return self._keep(cur_now, 'no reason to switch')
