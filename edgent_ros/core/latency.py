"""
Latency prediction: per-(host, layer kind) regressions and the ``LatencyModels`` artifact.

What the planner loads to predict a branch's device and edge time; no torch, scikit-learn or
SciPy here. How the regressions are fitted (features, transforms, the log fit, the dispatch
term) is documented in ``offline.fit``, which writes these artifacts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import math
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .arch import (AlexNetConfig, EXIT_ATTACH, layer_table, LayerSpec, NUM_EXITS, numel,
                   output_shape)
from .artifacts import (ARTIFACT_DIR, ArtifactError, LATENCY_FILE, LATENCY_FORMAT, load_json,
                        save_json)
from .model_plan import fit_prefixes


FEATURE_NAMES: Dict[str, Tuple[str, ...]] = {
    'conv': ('input_size', 'kernel_filters'),   # C*H*W, (kernel/stride)^2 * filters
    'relu': ('input_size',),
    'dropout': ('input_size',),
    'lrn': ('input_size',),
    'pool': ('input_size', 'output_size'),
    'fc': ('input_size', 'output_size'),
}
TRANSFORMS = ('linear', 'product', 'product_sqrt')
WEIGHTINGS = ('log', 'relative', 'absolute')   # how a model was fitted (see _fit_once)
FLOOR_MS = 1e-3                 # smallest predicted layer time (1 us)


def layer_features(spec: LayerSpec, in_shape: Sequence[int]) -> List[float]:
    """
    Return the paper's features of one layer (``FEATURE_NAMES[spec.kind]``), one frame.

    Sizes are element counts: conv ``[C*H*W, (kernel/stride)^2 * filters]``; relu, dropout, lrn
    ``[C*H*W]``; pool ``[input elements, output elements]``; fc ``[input elements, outputs]``.
    """
    if spec.kind not in FEATURE_NAMES:
        raise ValueError(f'unknown layer kind {spec.kind!r}; known: {sorted(FEATURE_NAMES)}')
    n_in = float(numel(in_shape))
    if spec.kind == 'conv':
        if spec.stride < 1:
            raise ValueError(f'conv stride must be >= 1, got {spec.stride}')
        return [n_in, (spec.kernel / spec.stride) ** 2 * spec.out_channels]
    if spec.kind == 'pool':
        return [n_in, float(numel(output_shape(spec, in_shape)))]
    if spec.kind == 'fc':
        return [n_in, float(spec.out_channels)]
    return [n_in]


def term_names(kind: str, transform: str) -> Tuple[str, ...]:
    """Return the regression terms of ``kind`` under ``transform`` (features, maybe product)."""
    if kind not in FEATURE_NAMES:
        raise ValueError(f'unknown layer kind {kind!r}; known: {sorted(FEATURE_NAMES)}')
    if transform not in TRANSFORMS:
        raise ValueError(f'unknown transform {transform!r}; known: {TRANSFORMS}')
    names = FEATURE_NAMES[kind]
    if transform in ('product', 'product_sqrt'):
        if len(names) != 2:
            raise ValueError(f'transform "{transform}" needs two features; {kind} has {names}')
        extra = (f'{names[1]}^0.5',) if transform == 'product_sqrt' else ()
        return names + (f'{names[0]}*{names[1]}',) + extra
    return names


def _terms(x: Sequence[float], transform: str) -> List[float]:
    if transform == 'product':
        return [x[0], x[1], x[0] * x[1]]
    if transform == 'product_sqrt':
        return [x[0], x[1], x[0] * x[1], math.sqrt(x[1])]
    return list(x)


@dataclass
class KindModel:
    """Fitted latency regression of one layer kind on one host (times in ms)."""

    kind: str
    transform: str                  # 'linear' | 'product' | 'product_sqrt'
    coef: List[float]               # ms per unit of each term (term_names order)
    intercept_ms: float
    weighting: str = 'relative'     # how it was fitted
    stats: Dict[str, Any] = field(default_factory=dict)   # n, held-out / CV MAPE (%)

    def __post_init__(self) -> None:
        """Raise ValueError unless there is one finite coefficient per term."""
        terms = term_names(self.kind, self.transform)
        if len(self.coef) != len(terms) \
                or not all(math.isfinite(c) for c in list(self.coef) + [self.intercept_ms]):
            raise ValueError(f'{self.kind}: need {len(terms)} finite coefficients for terms '
                             f'{terms}, got {self.coef!r} and intercept {self.intercept_ms!r}')

    def predict_ms(self, features: Sequence[float]) -> float:
        """Return the predicted time (ms, >= ``FLOOR_MS``) for the kind's features."""
        t = self.intercept_ms + sum(c * v for c, v in zip(self.coef,
                                                          _terms(features, self.transform)))
        return max(FLOOR_MS, t)

    def to_json(self) -> Dict[str, Any]:
        """Return the JSON form (see ``LatencyModels.to_json``)."""
        return {'features': list(FEATURE_NAMES[self.kind]), 'transform': self.transform,
                'terms': list(term_names(self.kind, self.transform)),
                'coef': [float(c) for c in self.coef], 'intercept_ms': float(self.intercept_ms),
                'weighting': self.weighting, **self.stats}


def mape_pct(pred: Sequence[float], meas: Sequence[float]) -> float:
    """Return the mean absolute percentage error (%) of ``pred`` against ``meas`` (> 0)."""
    if len(pred) != len(meas) or not meas:
        raise ValueError(f'need equal, non-empty lengths, got {len(pred)} and {len(meas)}')
    if any(m <= 0 for m in meas):
        raise ValueError(f'measured times must be > 0, got min {min(meas)}')
    return 100.0 * sum(abs(p - m) / m for p, m in zip(pred, meas)) / len(meas)


def _branches(body: Any, source: Any, host: str) -> Dict[int, List[float]]:
    """Return a host's measured ``branches_ms`` checked: exits 1.., finite times >= 0."""
    bad = ArtifactError(f'{source}: bad "branches_ms" of host {host!r}: need {{"exit": [ms of '
                        f'each layer >= 0]}} for exits 1..{NUM_EXITS}')
    if not isinstance(body, Mapping):
        raise bad
    out: Dict[int, List[float]] = {}
    for e, row in body.items():
        if not str(e).isdigit() or not 1 <= int(e) <= NUM_EXITS or not isinstance(row, list) \
                or not row or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                      and math.isfinite(v) and v >= 0 for v in row):
            raise bad
        out[int(e)] = [float(v) for v in row]
    return out


class LatencyModels:
    """Latency regressions per host (``'robot'``, ``'edge'``) and layer kind; times in ms."""

    def __init__(self, models: Mapping[str, Mapping[str, KindModel]],
                 host_info: Optional[Mapping[str, Mapping[str, Any]]] = None,
                 model_id: Optional[str] = None,
                 branches: Optional[Mapping[str, Mapping[int, Sequence[float]]]] = None):
        """
        Wrap ``{host: {kind: KindModel}}`` plus per-host emulation / end-to-end info.

        ``branches``: ``{host: {exit: per-layer ms}}`` measured on the host itself
        (``with_measured_robot``), used for those branches instead of the regressions.
        """
        if not models:
            raise ValueError('need models of at least one host')
        self._models = {h: dict(k) for h, k in models.items()}
        self.host_info: Dict[str, Dict[str, Any]] = {
            h: dict((host_info or {}).get(h, {})) for h in self._models}
        self.model_id = model_id
        self.branches: Dict[str, Dict[int, List[float]]] = {
            h: {int(e): [float(v) for v in row] for e, row in b.items()}
            for h, b in (branches or {}).items()}

    @property
    def hosts(self) -> Tuple[str, ...]:
        """Names of the hosts with models, sorted."""
        return tuple(sorted(self._models))

    def kinds(self, host: str) -> Tuple[str, ...]:
        """Layer kinds modelled for ``host``, sorted."""
        return tuple(sorted(self._host(host)))

    def emulation(self, host: str) -> Optional[Dict[str, Any]]:
        """
        Return how ``host`` was measured, or None if unknown.

        ``{'emulation': 'cgroup' | 'thread+factor' | 'none', 'threads', 'cpu_quota',
        'cpu_period_us', 'time_factor'}``.
        """
        self._host(host)
        return self.host_info.get(host, {}).get('emulation')

    def end_to_end_mape_pct(self, host: str) -> Optional[float]:
        """Return the end-to-end MAPE (%) of ``host``'s side of every split, None if unchecked."""
        self._host(host)
        e2e = self.host_info.get(host, {}).get('end_to_end') or {}
        return e2e.get('mape_pct')

    def dispatch_ms(self, host: str) -> float:
        """Return the per-layer sequential dispatch time (ms) added to ``host``'s layers."""
        self._host(host)
        d = self.host_info.get(host, {}).get('dispatch') or {}
        return float(d.get('dispatch_ms', 0.0))

    def batch_factor(self, host: str, batch_size: float) -> float:
        """
        Return the time of a batch of ``batch_size`` frames over one frame's, on ``host``.

        ``1 + beta * (b - 1)`` with the ``beta`` that ``edgent-ros profile-batch`` measured
        (a batch of b costs less than b frames one by one when beta < 1); without a
        measurement beta = 1: no gain assumed.
        """
        self._host(host)
        b = max(1.0, float(batch_size))
        beta = float((self.host_info.get(host, {}).get('batch') or {}).get('beta', 1.0))
        return 1.0 + beta * (b - 1.0)

    def _host(self, host: str) -> Dict[str, KindModel]:
        if host not in self._models:
            raise ValueError(f'unknown host {host!r}; have {self.hosts}')
        return self._models[host]

    def kind_model(self, host: str, kind: str) -> KindModel:
        """Return the regression of ``kind`` on ``host``; ValueError if there is none."""
        models = self._host(host)
        if kind not in models:
            raise ValueError(f'no latency model for layer kind {kind!r} on host {host!r}; '
                             f'have {sorted(models)}')
        return models[kind]

    def layer_ms(self, host: str, spec: LayerSpec, in_shape: Sequence[int]) -> float:
        """
        Return the predicted time (ms, >= ``FLOOR_MS``) of one layer for one frame.

        The kind's regression plus the host's ``dispatch_ms`` (the ``model.run`` loop's cost).
        """
        return (self.kind_model(host, spec.kind).predict_ms(layer_features(spec, in_shape))
                + self.dispatch_ms(host))

    def branch_layer_ms(self, host: str, cfg: AlexNetConfig, exit_index: int) -> List[float]:
        """
        Return the predicted time (ms) of every layer of branch ``exit_index`` on ``host``.

        Device time of split ``s`` is ``sum(robot[:s])``, edge time ``sum(edge[s:])``. A branch
        measured on the host (``branches``) gives its measured times.
        """
        table = layer_table(cfg, exit_index)
        measured = self.branches.get(host, {}).get(int(exit_index))
        if measured is None:
            return [self.layer_ms(host, r.spec, r.in_shape) for r in table]
        if len(measured) != len(table):
            raise ArtifactError(f'{host} branch {exit_index}: {len(measured)} measured layer '
                                f'times for {len(table)} layers (measured another model?)')
        return list(measured)

    def with_measured_robot(self, cfg: AlexNetConfig, measured: Mapping[Tuple[int, int], float],
                            scale: float, weights: Optional[Mapping[Tuple[int, int], float]] = None
                            ) -> 'LatencyModels':
        """
        Return these models with the robot's branches taken from live prefixes of the robot.

        ``measured``: the median live robot time (ms) of configurations ``(exit, split)``. Each
        branch's layers are ``model_plan.fit_prefixes`` of its measured splits (weighted by
        ``weights``, default 1 each), the regressions' times as the profile between them. A side
        exit's splits up to its attach point run the same layers as the last exit's, whose
        measurements they share unless measured themselves. Times are divided by ``scale`` (the
        planner's ``robot_time_scale``), so a planner multiplying by it plans the measured
        robot. Raises ValueError for a bad ``scale`` or a branch with no split measured.
        """
        if not scale > 0:
            raise ValueError(f'scale must be > 0, got {scale!r}')
        trunk = {s: float(v) for (e, s), v in measured.items() if e == NUM_EXITS}
        branches = {}
        for e in range(1, NUM_EXITS + 1):
            profile = [self.layer_ms('robot', r.spec, r.in_shape) for r in layer_table(cfg, e)]
            attach = EXIT_ATTACH.get(e, len(profile))
            points = {s: v for s, v in trunk.items() if s <= attach}
            points.update({s: float(v) for (x, s), v in measured.items() if x == e})
            w = {s: (weights or {}).get((e if (e, s) in measured else NUM_EXITS, s), 1.0)
                 for s in points}
            try:
                fitted = fit_prefixes(profile, points, w)
            except ValueError as exc:
                raise ValueError(f'robot branch {e}: {exc}') from exc
            branches[e] = [v / scale for v in fitted]
        info = {h: dict(v) for h, v in self.host_info.items()}
        info.setdefault('robot', {})['measured'] = {
            'how': 'live prefixes of the emulated robot (sweep calibrate-robot)',
            'scale': scale}
        return LatencyModels(self._models, info, self.model_id,
                             {**self.branches, 'robot': branches})

    def to_json(self) -> Dict[str, Any]:
        """
        Return the JSON body (without ``format``/``sha256``, which ``save`` adds).

        ``{'model_id', 'floor_ms', 'units': 'ms', 'hosts': {host: {'emulation': {...},
        'end_to_end': {...} | null, 'dispatch': {'dispatch_ms', 'fraction', 'floor_kind',
        'floor_ms', 'n'} | null, 'kinds': {kind: {'features', 'transform', 'terms', 'coef',
        'intercept_ms', 'weighting', 'n_samples', 'n_heldout', 'heldout_mape_pct',
        'cv_mape_pct', 'cv_median_ratio', 'train_mape_pct'}}}}}``. A layer's time is
        ``max(FLOOR_MS, intercept_ms + coef . terms) + dispatch_ms`` (``dispatch`` is absent
        from files written before it existed: no dispatch term). A host whose branches were
        measured on it adds ``'branches_ms': {exit: [ms of each layer]}`` (used instead of the
        regressions for those branches) and ``'measured': {'how', 'scale'}``.
        """
        hosts = {}
        for h in self.hosts:
            info = self.host_info.get(h, {})
            hosts[h] = {'emulation': info.get('emulation'),
                        'end_to_end': info.get('end_to_end'),
                        'dispatch': info.get('dispatch'),
                        'batch': info.get('batch'),
                        'kinds': {k: m.to_json() for k, m in sorted(self._models[h].items())}}
            if self.branches.get(h):
                hosts[h]['branches_ms'] = {str(e): row
                                           for e, row in sorted(self.branches[h].items())}
                hosts[h]['measured'] = info.get('measured')
        return {'model_id': self.model_id, 'floor_ms': FLOOR_MS, 'units': 'ms', 'hosts': hosts}

    @classmethod
    def from_json(cls, body: Mapping[str, Any], source: Any = '<json>') -> 'LatencyModels':
        """Build from ``to_json`` output; raise ArtifactError naming ``source`` when malformed."""
        hosts = body.get('hosts') if isinstance(body, Mapping) else None
        if not isinstance(hosts, Mapping) or not hosts:
            raise ArtifactError(f'{source}: no "hosts" object')
        models: Dict[str, Dict[str, KindModel]] = {}
        info: Dict[str, Dict[str, Any]] = {}
        branches: Dict[str, Dict[int, List[float]]] = {}
        for h, hb in hosts.items():
            kinds = hb.get('kinds') if isinstance(hb, Mapping) else None
            if not isinstance(kinds, Mapping) or not kinds:
                raise ArtifactError(f'{source}: host {h!r} has no "kinds" object')
            models[h] = {}
            for k, kb in kinds.items():
                if k not in FEATURE_NAMES:
                    raise ArtifactError(f'{source}: unknown layer kind {k!r} for host {h!r}; '
                                        f'known: {sorted(FEATURE_NAMES)}')
                try:
                    if list(kb['features']) != list(FEATURE_NAMES[k]):
                        raise ValueError(f'features {kb["features"]!r}, expected '
                                         f'{list(FEATURE_NAMES[k])}')
                    stats = {s: kb[s] for s in ('n_samples', 'n_heldout', 'heldout_mape_pct',
                                                'cv_mape_pct', 'cv_median_ratio',
                                                'train_mape_pct') if s in kb}
                    models[h][k] = KindModel(k, kb['transform'], [float(c) for c in kb['coef']],
                                             float(kb['intercept_ms']),
                                             kb.get('weighting', 'relative'), stats)
                except (KeyError, TypeError, ValueError) as exc:
                    raise ArtifactError(f'{source}: bad model for {h}/{k}: {exc}') from exc
            dispatch = hb.get('dispatch')
            if dispatch is not None:
                ms = dispatch.get('dispatch_ms') if isinstance(dispatch, Mapping) else None
                if isinstance(ms, bool) or not isinstance(ms, (int, float)) \
                        or not math.isfinite(ms) or ms < 0:
                    raise ArtifactError(f'{source}: bad dispatch of host {h!r}: need '
                                        f'"dispatch_ms" >= 0, got {dispatch!r}')
            batch = hb.get('batch')
            if batch is not None:
                beta = batch.get('beta') if isinstance(batch, Mapping) else None
                if isinstance(beta, bool) or not isinstance(beta, (int, float)) \
                        or not math.isfinite(beta) or not 0 < beta <= 2:
                    raise ArtifactError(f'{source}: bad batch cost of host {h!r}: need '
                                        f'"beta" in (0, 2], got {batch!r}')
            info[h] = {'emulation': hb.get('emulation'), 'end_to_end': hb.get('end_to_end'),
                       'dispatch': dispatch, 'batch': batch}
            if hb.get('branches_ms') is not None:
                branches[h] = _branches(hb['branches_ms'], source, h)
                info[h]['measured'] = hb.get('measured')
        return cls(models, info, body.get('model_id'), branches)

    def save(self, path: Path, model_id: str) -> None:
        """Write the models as a versioned JSON artifact for ``model_id``."""
        self.model_id = model_id
        save_json(self.to_json(), Path(path), LATENCY_FORMAT)

    @classmethod
    def load(cls, path: Optional[Path] = None, model_id: Optional[str] = None
             ) -> 'LatencyModels':
        """Load (default: the shipped artifact); ArtifactError if missing, garbled or foreign."""
        path = Path(path or ARTIFACT_DIR / LATENCY_FILE)
        body = load_json(path, LATENCY_FORMAT)
        if model_id is not None and body.get('model_id') != model_id:
            raise ArtifactError(f'{path}: latency models are for model '
                                f'{body.get("model_id")!r}, not {model_id!r}')
        return cls.from_json(body, source=path)
