"""
Per-op-kind latency regressions for any cut model (issue 16 item 3); no torch here.

A described model's blocks are lists of leaf ops (``core.chain.Op``, as dicts in the model's
table: ``kind``, ``in_shape``, ``out_shape``, ``flops``, ``params``, ``detail``). As in Edgent,
each op kind has a linear regression of its time on size features of one frame, fitted on many
single ops timed on a host (``offline.kind_profile``)::

    t_ms = max(FLOOR_MS, d + sum_i a_i * f_i)      a_i >= 0, d >= 0

fitted to the least mean absolute relative error (the MAPE), with features taken from the op
alone (``op_features``): ``flops`` (multiply-adds x 2, as ``core.chain`` counts them),
``in_elems`` / ``out_elems`` (elements of the first input and of the output, one frame) and
``params``. ``KIND_FEATURES`` lists the candidates per kind; ``fit_kind``
keeps the subset with the lowest cross-validated MAPE. A block's time is the sum of its ops'
predictions, plus ``op_overhead_ms`` per module op and ``block_overhead_ms`` once: what running
the ops inside a ``torch.fx`` block adds to timing them alone. A module op in a block's generated
code (``getattr(self.layer1, "0").conv1(x)``) costs ~4 us more than the same module called
alone on the edge, 15 % of a small residual block; a function op (``x + y``, ``torch.flatten``)
costs nothing more (like the AlexNet's dispatch term in ``offline.fit``). An op says which with
``detail['call']`` (the fx node's op: ``call_module``, ``call_function``, ``call_method``);
without it ``FUNCTION_KINDS`` are taken for functions, every other kind for a module.

A kind the regressions have never seen (``other:...`` ops of a user's model, a kind this host
was not profiled for) is never predicted as zero: ``predict_op`` returns None,
``predict_block`` returns the unseen kinds beside the partial sum, and ``block_ms`` uses the
block's directly measured time (``edgent-ros profile --model``) instead, or raises
``UnseenKindError`` when there is none.

Activations that can run in place (``INPLACE_KINDS``) have two regressions: ``relu`` (in place,
as ``nn.ReLU(inplace=True)`` in torchvision-style models) and ``relu:copy`` (a new output
tensor, twice as slow on large maps). An op says which with ``detail['inplace']``; without it the
in-place regression is used (``core.chain`` does not record the flag yet).

JSON form (``save`` / ``load``, format ``KIND_LATENCY_FORMAT``): ``{'units': 'ms', 'floor_ms',
'hosts': {host: {'info': {...}, 'block_overhead_ms', 'op_overhead_ms', 'kinds': {key:
{'features', 'coef',
'intercept_ms', 'stats'}}}}}``. This module never imports rclpy; fitting imports SciPy's NNLS
when called.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
import math
from pathlib import Path
import random
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .arch import numel
from .artifacts import ArtifactError, load_json, save_json
from .latency import mape_pct

KIND_LATENCY_FORMAT = 'edgent_ros/kind_latency/1'
FLOOR_MS = 1e-3                 # smallest predicted op time (1 us)
COPY_SUFFIX = ':copy'           # regression key of an activation that writes a new tensor
CV_FOLDS = 4
IRLS_ITERATIONS = 20          # reweighted rounds of the fit (towards least relative |error|)
IRLS_FLOOR = 1e-3            # smallest relative residual a weight divides by

_CONV = ('flops', 'in_elems', 'out_elems', 'params')
_ELEM = ('out_elems',)
_POOL = ('flops', 'in_elems', 'out_elems')
ACTIVATIONS = ('relu', 'relu6', 'hardswish', 'silu', 'gelu', 'sigmoid', 'hardsigmoid', 'tanh',
               'leaky_relu')
INPLACE_KINDS = ('relu', 'relu6', 'hardswish', 'silu', 'hardsigmoid', 'leaky_relu')
KIND_FEATURES: Dict[str, Tuple[str, ...]] = {
    'conv': _CONV, 'gconv': _CONV, 'dwconv': _POOL,
    'fc': _POOL,
    'bn': _ELEM,
    **{k: _ELEM for k in ACTIVATIONS},
    'add': _ELEM, 'mul': _ELEM, 'concat': _ELEM,
    'maxpool': _POOL, 'avgpool': _POOL,
    'adaptive_pool': ('in_elems', 'out_elems'), 'mean': ('in_elems', 'out_elems'),
    'flatten': ('in_elems',), 'identity': ('in_elems',), 'dropout': ('in_elems',),
}
FEATURES = ('flops', 'in_elems', 'out_elems', 'params')
# kinds a model usually writes as a function (x + y, torch.cat / flatten, x.mean)
FUNCTION_KINDS = ('add', 'mul', 'concat', 'mean', 'flatten')


class UnseenKindError(ValueError):
    """A block has op kinds no regression covers and no measured time to fall back to."""


def base_kind(key: str) -> str:
    """Return the op kind of a regression key (``'relu:copy'`` -> ``'relu'``)."""
    return key[:-len(COPY_SUFFIX)] if key.endswith(COPY_SUFFIX) else key


def regression_key(op: Mapping[str, Any]) -> str:
    """
    Return the regression an op uses: its kind, or ``kind:copy`` for an out-of-place activation.

    ``detail['inplace']`` False selects the copy variant of an ``INPLACE_KINDS`` activation;
    a missing flag means in place (see the module doc).
    """
    kind = str(op['kind'])
    detail = op.get('detail') or {}
    if kind in INPLACE_KINDS and detail.get('inplace', True) is False:
        return kind + COPY_SUFFIX
    return kind


def is_module_call(op: Mapping[str, Any]) -> bool:
    """Return whether an op is a module call (``detail['call']``, else by kind: module doc)."""
    call = (op.get('detail') or {}).get('call')
    if call is not None:
        return call == 'call_module'
    return str(op.get('kind')) not in FUNCTION_KINDS


def op_features(op: Mapping[str, Any]) -> Dict[str, float]:
    """Return every feature of ``FEATURES`` of one op dict (``core.chain.Op.to_dict``)."""
    try:
        return {'flops': float(op.get('flops', 0)),
                'in_elems': float(numel(op.get('in_shape') or ())),
                'out_elems': float(numel(op.get('out_shape') or ())),
                'params': float(op.get('params', 0))}
    except (TypeError, ValueError) as exc:
        raise ValueError(f'malformed op {op!r}: {exc}') from None


@dataclass
class KindRegression:
    """Fitted time of one op kind on one host: ``max(FLOOR_MS, d + coef . features)`` (ms)."""

    key: str                         # regression key (kind or kind:copy)
    features: Tuple[str, ...]        # the features used (a subset of KIND_FEATURES[kind])
    coef: List[float]                # ms per unit of each feature
    intercept_ms: float
    stats: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Raise ValueError for unknown features or non-finite / negative coefficients."""
        self.features = tuple(self.features)
        allowed = KIND_FEATURES.get(base_kind(self.key))
        if allowed is None:
            raise ValueError(f'unknown op kind {self.key!r}; known: {sorted(KIND_FEATURES)}')
        if not set(self.features) <= set(allowed) or len(set(self.features)) != \
                len(self.features):
            raise ValueError(f'{self.key}: features {self.features} not a subset of {allowed}')
        vals = list(self.coef) + [self.intercept_ms]
        if len(self.coef) != len(self.features) or \
                not all(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0
                        for v in vals):
            raise ValueError(f'{self.key}: need {len(self.features)} finite coefficients >= 0 '
                             f'and intercept >= 0, got {self.coef!r}, {self.intercept_ms!r}')

    def predict(self, feats: Mapping[str, float]) -> float:
        """Return the predicted time (ms, >= ``FLOOR_MS``) from a feature dict."""
        return max(FLOOR_MS, self.intercept_ms
                   + sum(c * float(feats[f]) for c, f in zip(self.coef, self.features)))

    def scaled(self, factor: float) -> 'KindRegression':
        """Return the regression with every time multiplied by ``factor``."""
        return KindRegression(self.key, self.features, [c * factor for c in self.coef],
                              self.intercept_ms * factor, dict(self.stats))

    def to_json(self) -> Dict[str, Any]:
        """Return ``{'features', 'coef', 'intercept_ms', 'stats'}``."""
        return {'features': list(self.features), 'coef': [float(c) for c in self.coef],
                'intercept_ms': float(self.intercept_ms), 'stats': dict(self.stats)}


@dataclass
class BlockEstimate:
    """A block's time and where it came from."""

    ms: float
    source: str                      # 'regression' | 'measured'
    unseen: Tuple[str, ...] = ()     # kinds the regressions do not cover
    regression_ms: float = 0.0       # sum over the covered ops (+ overhead), for the report


class KindLatency:
    """Per-kind regressions of one host; predicts ops and blocks (ms)."""

    def __init__(self, host: str, regressions: Mapping[str, KindRegression],
                 block_overhead_ms: float = 0.0, op_overhead_ms: float = 0.0,
                 info: Optional[Mapping[str, Any]] = None):
        """Wrap ``{key: KindRegression}`` of ``host``; ValueError for a bad overhead."""
        if not isinstance(host, str) or not host:
            raise ValueError(f'host must be a non-empty string, got {host!r}')
        for name, v in (('block_overhead_ms', block_overhead_ms),
                        ('op_overhead_ms', op_overhead_ms)):
            if isinstance(v, bool) or not (isinstance(v, (int, float)) and math.isfinite(v)
                                           and v >= 0):
                raise ValueError(f'{name} must be finite and >= 0, got {v!r}')
        for k, r in regressions.items():
            if k != r.key:
                raise ValueError(f'regression under {k!r} is keyed {r.key!r}')
        self.host = host
        self.regressions = dict(regressions)
        self.block_overhead_ms = float(block_overhead_ms)
        self.op_overhead_ms = float(op_overhead_ms)
        self.info = dict(info or {})

    @property
    def kinds(self) -> Tuple[str, ...]:
        """Regression keys covered, sorted."""
        return tuple(sorted(self.regressions))

    def predict_op(self, op: Mapping[str, Any]) -> Optional[float]:
        """Return the predicted time (ms) of one op dict, or None if its kind is unseen."""
        reg = self.regressions.get(regression_key(op))
        if reg is None:
            return None
        return reg.predict(op_features(op))

    def predict_block(self, ops: Sequence[Mapping[str, Any]]) -> Tuple[float, List[str]]:
        """
        Return ``(ms, unseen)``: the covered ops, ``op_overhead_ms`` per module op, the block's.

        ``unseen`` lists (sorted, once each) the regression keys of ops no regression covers;
        when it is not empty ``ms`` is a lower bound, not the block's time (``block_ms``).
        """
        total, unseen = self.block_overhead_ms, set()
        for op in ops:
            t = self.predict_op(op)
            if t is None:
                unseen.add(regression_key(op))
            else:
                total += t + (self.op_overhead_ms if is_module_call(op) else 0.0)
        return total, sorted(unseen)

    def block_ms(self, ops: Sequence[Mapping[str, Any]], measured_ms: Optional[float] = None
                 ) -> BlockEstimate:
        """
        Return a block's time: the regression sum, or ``measured_ms`` when a kind is unseen.

        Raises UnseenKindError naming the kinds when a kind is unseen and nothing was measured
        (profile the model: ``edgent-ros profile --model ...``); never returns a silent zero.
        """
        ms, unseen = self.predict_block(ops)
        if not unseen:
            return BlockEstimate(ms, 'regression', (), ms)
        if measured_ms is None or not (math.isfinite(measured_ms) and measured_ms > 0):
            raise UnseenKindError(f'{self.host}: no latency regression for op kinds '
                                  f'{", ".join(unseen)} and no measured block time; measure '
                                  'the model: edgent-ros profile --model ... --host '
                                  f'{self.host}')
        return BlockEstimate(float(measured_ms), 'measured', tuple(unseen), ms)

    def scaled(self, factor: float, host: str) -> 'KindLatency':
        """Return the regressions of another ``host`` that is ``factor`` times slower."""
        if not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor > 0):
            raise ValueError(f'time factor must be finite and > 0, got {factor!r}')
        info = dict(self.info, scaled_from=self.host, time_factor=float(factor))
        return KindLatency(host, {k: r.scaled(factor) for k, r in self.regressions.items()},
                           self.block_overhead_ms * factor, self.op_overhead_ms * factor, info)

    def to_json(self) -> Dict[str, Any]:
        """Return this host's body: info, block and op overheads, kinds."""
        return {'info': dict(self.info), 'block_overhead_ms': self.block_overhead_ms,
                'op_overhead_ms': self.op_overhead_ms,
                'kinds': {k: r.to_json() for k, r in sorted(self.regressions.items())}}

    @classmethod
    def from_json(cls, host: str, body: Mapping[str, Any], source: Any = '<json>'
                  ) -> 'KindLatency':
        """Build from ``to_json`` output; ArtifactError naming ``source`` when malformed."""
        kinds = body.get('kinds') if isinstance(body, Mapping) else None
        if not isinstance(kinds, Mapping) or not kinds:
            raise ArtifactError(f'{source}: host {host!r} has no "kinds" object')
        regs = {}
        for k, kb in kinds.items():
            try:
                regs[k] = KindRegression(k, tuple(kb['features']),
                                         [float(c) for c in kb['coef']],
                                         float(kb['intercept_ms']), dict(kb.get('stats') or {}))
            except (KeyError, TypeError, ValueError) as exc:
                raise ArtifactError(f'{source}: bad regression {host}/{k}: {exc}') from exc
        try:
            return cls(host, regs, float(body.get('block_overhead_ms', 0.0)),
                       float(body.get('op_overhead_ms', 0.0)), body.get('info') or {})
        except (TypeError, ValueError) as exc:
            raise ArtifactError(f'{source}: host {host!r}: {exc}') from exc

    def save(self, path: Path) -> None:
        """Merge this host's regressions into the JSON file at ``path`` (other hosts kept)."""
        path = Path(path)
        hosts: Dict[str, Any] = {}
        if path.is_file():
            hosts = dict(load_json(path, KIND_LATENCY_FORMAT).get('hosts') or {})
        hosts[self.host] = self.to_json()
        save_json({'units': 'ms', 'floor_ms': FLOOR_MS, 'hosts': hosts}, path,
                  KIND_LATENCY_FORMAT)

    @classmethod
    def load(cls, path: Path, host: str = 'edge') -> 'KindLatency':
        """Load ``host``'s regressions; ArtifactError if missing, garbled or without the host."""
        body = load_json(Path(path), KIND_LATENCY_FORMAT)
        hosts = body.get('hosts')
        if not isinstance(hosts, Mapping) or host not in hosts:
            have = sorted(hosts) if isinstance(hosts, Mapping) else []
            raise ArtifactError(f'{path}: no kind regressions for host {host!r} (have: '
                                f'{", ".join(have) or "none"})')
        return cls.from_json(host, hosts[host], source=path)


# ------------------------------------------------------------------------------------ fitting

def _nnls_relative(x: np.ndarray, y: np.ndarray, iterations: int = IRLS_ITERATIONS
                   ) -> Tuple[float, np.ndarray]:
    """
    Fit ``d + x @ a`` (``d, a >= 0``) minimizing the mean absolute *relative* error to ``y``.

    Non-negative least squares on the relative error first, then ``iterations`` reweighted
    rounds (weights ``1 / max(|relative residual|, IRLS_FLOOR)``) towards the least absolute
    relative deviation, i.e. the MAPE itself: a least-squares fit on relative error lies below
    the median time whenever times scatter (``offline.fit`` explains the bias), and one timing
    hiccup would pull it.
    """
    from scipy.optimize import nnls
    design = np.column_stack([np.ones(len(y)), x]) / y[:, None]
    scale = np.abs(design).max(axis=0)
    scale[scale == 0] = 1.0
    a = design / scale
    ones = np.ones(len(y))
    w = np.ones(len(y))
    theta = np.zeros(a.shape[1])
    for _ in range(iterations + 1):
        sw = np.sqrt(w)
        theta, _ = nnls(a * sw[:, None], ones * sw, maxiter=50 * a.shape[1] + 100)
        w = 1.0 / np.maximum(np.abs(a @ theta - 1.0), IRLS_FLOOR)
    theta = theta / scale
    return float(theta[0]), theta[1:]


def _subsets(names: Sequence[str]) -> List[Tuple[str, ...]]:
    out: List[Tuple[str, ...]] = [()]
    for r in range(1, len(names) + 1):
        out += list(combinations(names, r))
    return out


def fit_kind(key: str, feats: Sequence[Mapping[str, float]], ys: Sequence[float],
             seed: int = 0, folds: int = CV_FOLDS) -> KindRegression:
    """
    Fit the regression of kind ``key`` from feature dicts ``feats`` and times ``ys`` (ms, > 0).

    Every subset of ``KIND_FEATURES[kind]`` (the empty one: a constant) is fitted with
    non-negative coefficients to the least mean absolute relative error (``_nnls_relative``);
    with at least ``2 * folds`` samples the
    subset with the lowest ``folds``-fold cross-validated MAPE wins (ties: fewer features),
    otherwise all features are used. ``stats``: ``n``, ``cv_mape_pct`` (None without
    cross-validation), ``cv_median_ratio`` (median cross-validated predicted/measured),
    ``train_mape_pct``, ``min_ms`` / ``max_ms`` of the samples.
    """
    kind = base_kind(key)
    if kind not in KIND_FEATURES:
        raise ValueError(f'unknown op kind {key!r}; known: {sorted(KIND_FEATURES)}')
    names = KIND_FEATURES[kind]
    n = len(ys)
    if n != len(feats) or n < 2:
        raise ValueError(f'{key}: need >= 2 samples with features, got {len(feats)} feature '
                         f'sets and {n} times')
    y = np.array(ys, dtype=float)
    if not np.all(np.isfinite(y)) or np.any(y <= 0):
        raise ValueError(f'{key}: times must be finite and > 0 ms')
    try:
        x_all = np.array([[float(f[nm]) for nm in names] for f in feats], dtype=float)
    except KeyError as exc:
        raise ValueError(f'{key}: every sample needs features {names} (missing {exc})') from None
    cands = _subsets(names)
    best, cv_best, ratio = cands[-1], None, None
    if n >= 2 * folds:
        perm = list(range(n))
        random.Random(seed).shuffle(perm)
        parts = [perm[i::folds] for i in range(folds)]
        for cand in cands:
            cols = [names.index(c) for c in cand]
            pred = np.empty(n)
            for part in parts:
                test = np.array(part)
                train = np.setdiff1d(np.arange(n), test)
                d, a = _nnls_relative(x_all[train][:, cols], y[train])
                pred[test] = np.maximum(FLOOR_MS, d + x_all[test][:, cols] @ a)
            cv = mape_pct(list(pred), list(y))
            if cv_best is None or cv < cv_best - 1e-9:
                best, cv_best = cand, cv
                ratio = float(np.median(pred / y))
    cols = [names.index(c) for c in best]
    d, a = _nnls_relative(x_all[:, cols], y)
    reg = KindRegression(key, tuple(best), [max(0.0, float(v)) for v in a], max(0.0, d))
    train_pred = [reg.predict(dict(zip(names, row))) for row in x_all]
    reg.stats = {'n': n, 'cv_mape_pct': cv_best, 'cv_median_ratio': ratio,
                 'train_mape_pct': mape_pct(train_pred, list(y)),
                 'min_ms': float(y.min()), 'max_ms': float(y.max())}
    return reg


def fit_kind_latency(host: str, samples: Sequence[Tuple[Mapping[str, Any], float]],
                     block_overhead_ms: float = 0.0, op_overhead_ms: float = 0.0,
                     info: Optional[Mapping[str, Any]] = None, seed: int = 0,
                     min_samples: int = 3) -> KindLatency:
    """
    Fit one regression per regression key from ``(op dict, measured ms)`` samples of ``host``.

    Keys with fewer than ``min_samples`` samples, or of a kind without ``KIND_FEATURES``, get
    no regression (their ops stay unseen and fall back to measurement); their names go to
    ``info['not_fitted']``.
    """
    by_key: Dict[str, Tuple[List[Dict[str, float]], List[float]]] = {}
    for op, ms in samples:
        fs, ys = by_key.setdefault(regression_key(op), ([], []))
        fs.append(op_features(op))
        ys.append(float(ms))
    regs, few = {}, []
    for key, (fs, ys) in sorted(by_key.items()):
        if base_kind(key) not in KIND_FEATURES or len(ys) < max(2, min_samples):
            few.append(key)
            continue
        regs[key] = fit_kind(key, fs, ys, seed)
    if not regs:
        raise ValueError(f'{host}: no kind has enough samples to fit')
    info = dict(info or {})
    if few:
        info['not_fitted'] = few
    return KindLatency(host, regs, block_overhead_ms, op_overhead_ms, info)
