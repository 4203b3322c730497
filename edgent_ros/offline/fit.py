"""
Per-(host, layer kind) latency regressions, as in Edgent (phase 1, issue 4).

Features per layer kind (the paper's): conv -- input size ``C*H*W`` and ``(kernel/stride)^2 *
filters``; relu, dropout, LRN -- input size; pool -- input and output size; fc -- input and
output size (sizes in elements of one frame).

Model (chosen per kind by 4-fold cross-validated MAPE on the training part, see ``fit_kind``):
``t_ms = d + sum_i a_i * term_i`` with non-negative ``a_i`` and ``d`` (time never falls as a
layer grows, and an empty layer still costs its call), terms being the features (``'linear'``)
or, for two-feature kinds, the features and their product (``'product'``: ``a*x1 + b*x2 +
c*x1*x2 + d``), optionally with the square root of the second (``'product_sqrt'``: ``... +
e*sqrt(x2)``). The terms are still built only from the paper's features. The product is what
the cost really scales with: for conv, ``C*H*W * (k/s)^2 * filters`` is the number of
multiply-adds; for fc, ``in * out``. The concave ``sqrt(x2)`` lets a conv's fixed cost grow with
its kernel (a 5x5 conv of a tiny input takes ~0.08 ms on the edge, a 1x1 one ~0.015 ms) without
the linear ``x2`` term overshooting at large filter counts (it took conv's cross-validated MAPE
from 46 % to 36 % on the edge, 50 % to 45 % on the robot).

Fitting (``weighting='log'``): robust non-linear least squares on the *log* of the time,
``sum rho(log(pred) - log(t))`` with a soft-L1 ``rho`` (scale ``LOG_LOSS_SCALE``), i.e. on
relative error, symmetric in over- and under-prediction, and insensitive to the odd timing
hiccup (the edge profile has a 0.12 M-MAC conv measured at 7.8 ms, where its neighbours take
0.03-0.06 ms and the robot 0.25 ms). It estimates the median time of a configuration. The
earlier fit, least squares with weights ``1/t^2`` (``'relative'``, still loadable, see
``_fit_once``), is biased low whenever the times scatter around the model: its optimum for
multiplicative scatter ``sigma`` (log units) lies a factor ``exp(-1.5 sigma^2)`` below the
median. The profiles scatter by sigma ~ 0.3 on the cgroup robot (its dropout rows -- identical
work -- span 18..42 us) and the two-feature conv model misfits by as much on both hosts, so the
robot's layers were predicted 10-24 % low (4-fold cross-validated median predicted/measured
0.76-0.90 per kind), the edge's convs 8 % low (0.92), and every sum of layers with them (the
end-to-end under-prediction of ~20 %). A seeded 25 % of each kind's configurations is held out;
the held-out MAPE is reported, then the chosen model is refitted on all configurations.

Sequential dispatch (``dispatch_ms`` per host): the profile times each layer alone, called
back to back through ``profiling.time_call``; the model runs layers through the ``model.run``
loop (an ``nn.ModuleDict`` look-up and a loop step per layer), which costs about one extra
microsecond per layer on the edge (measured: 2.35 us per identity layer through ``model.run``
vs 1.24 us for an isolated identity call through ``time_call``; ``run_loop_overhead_ms``
repeats that measurement). That is Python / dispatcher work, so it scales with the host's cost
of an (almost) empty module call, which the profile measures: dropout is an identity at
inference. ``dispatch_ms = DISPATCH_FRACTION * median dropout time`` of the host's profile
(``DISPATCH_FRACTION`` = 1.11 us / 4.73 us on the edge, giving 7.5 us on the cgroup robot whose
dropout calls are 6.9x slower) is added to every layer's prediction (``LatencyModels.layer_ms``).

Predictions are clamped to ``FLOOR_MS``. The fitted models are saved as JSON only
(coefficients, intercept, feature and term names, transform), never pickled, together with how
the robot was emulated, the dispatch term and the end-to-end MAPE of predicted vs measured device
(robot, prefix ``[0, s)``) and edge (suffix ``[s, end)``) time over every (exit, split) of the
real model.

Known limit (profiling, not regression): ``profiling.profile_layers`` feeds every layer a
contiguous NCHW tensor, but the deployed model's activations after a conv are channels-last
(PyTorch's CPU convolution returns them so). Max-pooling a channels-last tensor is 3-10x faster
(pool1 of the model: 0.105 ms profiled, 0.020 ms inside the model on the edge), conv on a
channels-last input is somewhat slower on this build and fc must copy it to flatten it. No
regression on these profiles can see that; profiling inputs in the memory format the model
produces would.

This module never imports rclpy; scikit-learn, SciPy (a scikit-learn dependency), matplotlib and
torch are imported only when fitting, plotting or measuring.
"""

from __future__ import annotations

import math
from pathlib import Path
import statistics
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..core.arch import AlexNetConfig, NUM_EXITS
from ..core.latency import (_terms, FEATURE_NAMES, KindModel, layer_features, LatencyModels,
                            mape_pct, TRANSFORMS, WEIGHTINGS)


FIT_WEIGHTINGS = ('log',)       # what fit_kind tries: 'relative' is biased low (module doc)
LOG_LOSS_SCALE = 0.1            # soft-L1 scale of the log fit: residuals past ~10 % count less
DISPATCH_FRACTION = 0.23        # model.run loop cost per layer / an isolated dropout call
DISPATCH_KIND = 'dropout'       # identity at inference: its time is the host's call cost
HOLDOUT = 0.25                  # fraction of configurations held out per kind
PRIMARY_PART = {'robot': 'prefix', 'edge': 'suffix'}   # the side of a split each host runs


def _fit_once(kind: str, xs: Sequence[Sequence[float]], ys: Sequence[float], transform: str,
              weighting: str) -> KindModel:
    """
    Fit ``d + sum a_i * term_i`` (``a_i >= 0``) to times ``ys`` (ms, > 0) one way.

    ``'relative'``: least squares with weights ``1/t^2``, intercept free (the original fit,
    biased low under scatter); ``'absolute'``: ordinary least squares, intercept free;
    ``'log'``: robust (soft-L1, scale ``LOG_LOSS_SCALE``) least squares on ``log(pred) -
    log(t)`` with ``d >= 0``, started from the ``'relative'`` fit.
    """
    from sklearn.linear_model import LinearRegression
    if weighting not in WEIGHTINGS:
        raise ValueError(f'unknown weighting {weighting!r}; known: {WEIGHTINGS}')
    a = np.array([_terms(x, transform) for x in xs], dtype=float)
    y = np.array(ys, dtype=float)
    scale = np.abs(a).max(axis=0)
    scale[scale == 0] = 1.0
    a = a / scale
    weights = 1.0 / y ** 2 if weighting in ('relative', 'log') else None
    reg = LinearRegression(positive=True).fit(a, y, sample_weight=weights)
    coef, intercept = reg.coef_, float(reg.intercept_)
    if weighting == 'log':
        from scipy.optimize import least_squares
        design = np.column_stack([np.ones(len(y)), a])
        log_y = np.log(y)
        # Start inside the bounds: a negative intercept becomes a small positive one.
        start = np.maximum(np.concatenate([[intercept], coef]), 1e-6 * float(y.min()))

        def residuals(theta: Any) -> Any:
            return np.log(np.maximum(design @ theta, 1e-9)) - log_y
        sol = least_squares(residuals, start, bounds=(0.0, np.inf), loss='soft_l1',
                            f_scale=LOG_LOSS_SCALE, x_scale='jac', xtol=1e-12, ftol=1e-12,
                            gtol=1e-12, max_nfev=2000)
        intercept, coef = float(sol.x[0]), sol.x[1:]
    return KindModel(kind, transform, [float(c) for c in coef / scale], intercept, weighting)


def _candidates(kind: str) -> List[Tuple[str, str]]:
    transforms = TRANSFORMS if len(FEATURE_NAMES[kind]) == 2 else ('linear',)
    return [(t, w) for t in transforms for w in FIT_WEIGHTINGS]


def fit_kind(kind: str, xs: Sequence[Sequence[float]], ys: Sequence[float], seed: int = 0,
             holdout: float = HOLDOUT) -> KindModel:
    """
    Fit the latency regression of one kind from features ``xs`` and times ``ys`` (ms).

    A seeded ``holdout`` share (at least one when there are 4 or more samples) is held out;
    the candidate (transform x ``FIT_WEIGHTINGS``) with the lowest 4-fold cross-validated MAPE
    on the rest (with at least 8 samples; else ``'product'``/``'linear'`` with the log fit) is
    scored on the held-out part and refitted on all samples. ``stats`` gets ``n_samples``,
    ``n_heldout``, ``heldout_mape_pct`` (None without a held-out part), ``cv_mape_pct``,
    ``cv_median_ratio`` (median cross-validated predicted/measured: 1 when unbiased; None
    without cross-validation) and ``train_mape_pct``.
    """
    if kind not in FEATURE_NAMES:
        raise ValueError(f'unknown layer kind {kind!r}; known: {sorted(FEATURE_NAMES)}')
    n = len(ys)
    nf = len(FEATURE_NAMES[kind])
    if n != len(xs) or n < nf + 1:
        raise ValueError(f'{kind}: need >= {nf + 1} samples with matching features, got '
                         f'{len(xs)} features and {n} times')
    if not 0.0 <= holdout < 1.0:
        raise ValueError(f'holdout must be in [0, 1), got {holdout}')
    if any(not y > 0 for y in ys):
        raise ValueError(f'{kind}: times must be > 0 ms, got min {min(ys)}')
    if any(len(x) != nf for x in xs):
        raise ValueError(f'{kind}: every sample needs {nf} features {FEATURE_NAMES[kind]}')
    perm = np.random.RandomState(seed).permutation(n)
    n_test = max(1, int(round(holdout * n))) if n >= 4 and holdout > 0 else 0
    test, train = perm[:n_test], perm[n_test:]
    xtr, ytr = [xs[i] for i in train], [ys[i] for i in train]

    def score(m: KindModel, idx: Sequence[int]) -> float:
        return mape_pct([m.predict_ms(xs[i]) for i in idx], [ys[i] for i in idx])

    default = ('product' if nf == 2 else 'linear', FIT_WEIGHTINGS[0])
    best, cv_best, cv_ratio = default, None, None
    if len(train) >= 8:
        from sklearn.model_selection import KFold
        folds = list(KFold(4, shuffle=True, random_state=seed).split(train))
        for cand in _candidates(kind):
            pred, meas = [], []
            for fit_idx, val_idx in folds:
                m = _fit_once(kind, [xtr[i] for i in fit_idx], [ytr[i] for i in fit_idx], *cand)
                pred += [m.predict_ms(xtr[i]) for i in val_idx]
                meas += [ytr[i] for i in val_idx]
            cv = mape_pct(pred, meas)
            if cv_best is None or cv < cv_best - 1e-9:
                best, cv_best = cand, cv
                cv_ratio = float(np.median(np.array(pred) / np.array(meas)))
    heldout = None
    if n_test:
        heldout = score(_fit_once(kind, xtr, ytr, *best), test)
    final = _fit_once(kind, xs, ys, *best)
    final.stats = {'n_samples': n, 'n_heldout': n_test, 'heldout_mape_pct': heldout,
                   'cv_mape_pct': cv_best, 'cv_median_ratio': cv_ratio,
                   'train_mape_pct': score(final, range(n))}
    return final


def _host_emulation(host: str, rows: Sequence[Mapping[str, str]], path: Any) -> Dict[str, Any]:
    hosts = {r['host'] for r in rows}
    if hosts != {host}:
        raise ValueError(f'{path}: expected rows of host {host!r}, found {sorted(hosts)}')
    first = rows[0]
    emus = {r['emulation'] for r in rows}
    if len(emus) != 1:
        raise ValueError(f'{path}: mixed emulations {sorted(emus)}')

    def num(key: str, cast: Any) -> Any:
        return cast(first[key]) if first.get(key, '') != '' else None
    return {'emulation': first['emulation'], 'threads': num('threads', int),
            'cpu_quota': num('cpu_quota', float), 'cpu_period_us': num('cpu_period_us', int),
            'time_factor': num('time_factor', float)}


def fit_host(host: str, rows: Sequence[Mapping[str, str]], seed: int = 0,
             source: Any = '<rows>') -> Tuple[Dict[str, KindModel], Dict[str, Any]]:
    """
    Fit one ``KindModel`` per kind from profile CSV rows of ``host`` (target: ``median_ms``).

    Returns ``(models by kind, emulation info)``; raises ValueError naming ``source`` for rows
    of another host, mixed emulations or malformed rows.
    """
    from .profiling import spec_from_row
    if not rows:
        raise ValueError(f'{source}: no profile rows')
    emulation = _host_emulation(host, rows, source)
    data: Dict[str, Tuple[List[List[float]], List[float]]] = {}
    for r in rows:
        spec, in_shape = spec_from_row(dict(r))
        xs, ys = data.setdefault(spec.kind, ([], []))
        xs.append(layer_features(spec, in_shape))
        ys.append(float(r['median_ms']))
    return {k: fit_kind(k, xs, ys, seed) for k, (xs, ys) in sorted(data.items())}, emulation


def dispatch_overhead(rows: Sequence[Mapping[str, str]], fraction: float = DISPATCH_FRACTION
                      ) -> Optional[Dict[str, Any]]:
    """
    Return the per-layer sequential dispatch term of one host from its profile CSV rows.

    ``{'dispatch_ms': fraction * floor_ms, 'fraction', 'floor_kind': DISPATCH_KIND, 'floor_ms':
    median time of the host's DISPATCH_KIND rows, 'n': their number}``, or None without such
    rows. Raises ValueError for a negative or non-finite ``fraction``.
    """
    if not (isinstance(fraction, (int, float)) and math.isfinite(fraction) and fraction >= 0):
        raise ValueError(f'dispatch fraction must be a finite number >= 0, got {fraction!r}')
    times = [float(r['median_ms']) for r in rows if r.get('kind') == DISPATCH_KIND]
    if not times:
        return None
    floor = statistics.median(times)
    return {'dispatch_ms': float(fraction) * floor, 'fraction': float(fraction),
            'floor_kind': DISPATCH_KIND, 'floor_ms': floor, 'n': len(times)}


def run_loop_overhead_ms(n_layers: int = 20, repeats: int = 300) -> Dict[str, float]:
    """
    Measure what ``model.run`` adds per layer on this host over an isolated module call.

    Every layer of a ``MultiExitAlexNet`` is replaced by ``nn.Identity``; ``profiling.time_call``
    times ``run`` over 1 and ``n_layers`` (2..20) layers of exit 5 and one isolated identity
    call (single calls, ``repeats`` samples, the current torch thread count). Returns
    ``{'per_layer_ms'``: run slope per layer minus the isolated call, ``'run_slope_ms'``,
    ``'identity_ms'``, ``'run_fixed_ms'``: the rest of one ``run`` call``}``. Takes about a
    second; the source of ``DISPATCH_FRACTION`` (module doc).
    """
    import torch
    from torch import nn
    from ..core.model import MultiExitAlexNet
    from .profiling import time_call, Timing
    if not 2 <= n_layers <= 20:
        raise ValueError(f'n_layers must be in 2..20 (exit 5 has 20 layers), got {n_layers}')
    model = MultiExitAlexNet().eval()
    for name in list(model.layers.keys()):
        model.layers[name] = nn.Identity()
    identity = nn.Identity()
    x = torch.zeros(1, 10)
    timing = Timing(repeats, max(1, repeats // 10))
    with torch.inference_mode():
        iso = time_call(lambda: identity(x), timing)['median_ms']
        one = time_call(lambda: model.run(x, NUM_EXITS, 0, 1), timing)['median_ms']
        many = time_call(lambda: model.run(x, NUM_EXITS, 0, n_layers), timing)['median_ms']
    slope = (many - one) / (n_layers - 1)
    return {'per_layer_ms': slope - iso, 'run_slope_ms': slope, 'identity_ms': iso,
            'run_fixed_ms': one - slope}


def fit_latency_models(host_rows: Mapping[str, Sequence[Mapping[str, str]]], seed: int = 0,
                       sources: Optional[Mapping[str, Any]] = None,
                       dispatch_fraction: float = DISPATCH_FRACTION) -> LatencyModels:
    """
    Fit ``LatencyModels`` from profile CSV rows per host (``{'robot': rows, 'edge': rows}``).

    Each host also gets its sequential dispatch term (``dispatch_overhead(rows,
    dispatch_fraction)``; 0 disables it).
    """
    models, info = {}, {}
    for host, rows in host_rows.items():
        src = (sources or {}).get(host, f'<{host} rows>')
        models[host], emulation = fit_host(host, rows, seed, src)
        info[host] = {'emulation': emulation, 'end_to_end': None,
                      'dispatch': dispatch_overhead(rows, dispatch_fraction)}
    return LatencyModels(models, info)


def end_to_end_check(models: LatencyModels, cfg: AlexNetConfig, host: str,
                     rows: Sequence[Mapping[str, str]], source: Any = '<rows>'
                     ) -> Tuple[Dict[str, Any], List[Tuple[str, float, float]]]:
    """
    Compare predicted and measured times of the real model's branch parts on ``host``.

    ``rows`` are branch CSV rows (``profiling.measure_branches``) of ``cfg``'s model. Each row
    covers layers ``[start, stop)`` of one exit; its prediction is the sum of the per-layer
    predictions. Returns ``(summary, points)``: ``summary['mape_pct']`` is the MAPE over the
    host's own side of every non-empty split (robot: prefixes ``[0, s)``, edge: suffixes
    ``[s, end)``), with per-part MAPEs as ``mape_<part>_pct``, ``max_ape_pct`` and
    ``median_ratio`` (median predicted/measured) of the host's side; ``points`` are
    ``(part, measured_ms, predicted_ms)``.
    """
    model_id = cfg.model_id()
    per_exit = {e: models.branch_layer_ms(host, cfg, e) for e in range(1, NUM_EXITS + 1)}
    by_part: Dict[str, Tuple[List[float], List[float]]] = {}
    points = []
    for r in rows:
        if r['host'] != host:
            raise ValueError(f'{source}: expected rows of host {host!r}, got {r["host"]!r}')
        if r['model_id'] != model_id:
            raise ValueError(f'{source}: rows are for model {r["model_id"]!r}, not {model_id!r}')
        e, start, stop = int(r['exit']), int(r['start']), int(r['stop'])
        if e not in per_exit or not 0 <= start < stop <= len(per_exit[e]):
            raise ValueError(f'{source}: bad part exit={e} [{start}, {stop})')
        pred = sum(per_exit[e][start:stop])
        meas = float(r['median_ms'])
        pm = by_part.setdefault(r['part'], ([], []))
        pm[0].append(pred)
        pm[1].append(meas)
        points.append((r['part'], meas, pred))
    primary = PRIMARY_PART.get(host, 'prefix')
    summary: Dict[str, Any] = {'part': primary, 'mape_pct': None, 'n': 0}
    for part, (pred, meas) in sorted(by_part.items()):
        summary[f'mape_{part}_pct'] = mape_pct(pred, meas)
        summary[f'n_{part}'] = len(meas)
        if part == primary:
            summary['mape_pct'] = summary[f'mape_{part}_pct']
            summary['n'] = len(meas)
            summary['max_ape_pct'] = 100.0 * max(abs(p - m) / m for p, m in zip(pred, meas))
            summary['median_ratio'] = statistics.median(p / m for p, m in zip(pred, meas))
    return summary, points


DISPATCH_GRID = tuple(round(0.1 * i, 1) for i in range(0, 41))   # 0.0 .. 4.0


def choose_dispatch_fraction(models: 'LatencyModels', cfg: AlexNetConfig, host: str,
                             profile_rows: Sequence[Mapping[str, str]],
                             branch_rows: Sequence[Mapping[str, str]],
                             grid: Sequence[float] = DISPATCH_GRID) -> Dict[str, Any]:
    """
    Choose ``host``'s dispatch fraction by leave-one-exit-out cross-validation.

    The per-layer regressions stay as fitted; only the per-layer dispatch term varies. For each
    exit ``e``, the fraction minimizing the MAPE of the host's side (robot prefixes, edge
    suffixes) over the *other* exits' branch measurements predicts exit ``e``'s; the pooled
    errors give the held-out MAPE. The fraction returned minimizes the MAPE over all exits.
    Returns ``{'fraction', 'heldout_mape_pct', 'per_exit': {e: chosen fraction}}``;
    ``models.host_info[host]['dispatch']`` is left at the returned fraction.
    """
    part = PRIMARY_PART.get(host, 'prefix')
    errs: Dict[float, Dict[int, List[float]]] = {}
    for f in grid:
        models.host_info[host]['dispatch'] = dispatch_overhead(profile_rows, f)
        per_exit = {e: models.branch_layer_ms(host, cfg, e) for e in range(1, NUM_EXITS + 1)}
        by_exit: Dict[int, List[float]] = {}
        for r in branch_rows:
            if r['part'] != part:
                continue
            e, start, stop = int(r['exit']), int(r['start']), int(r['stop'])
            meas = float(r['median_ms'])
            by_exit.setdefault(e, []).append(abs(sum(per_exit[e][start:stop]) - meas) / meas)
        errs[f] = by_exit
    exits = sorted({e for f in grid for e in errs[f]})
    if len(exits) < 2:
        raise ValueError(f'{host}: need branch measurements of >= 2 exits to cross-validate')

    def mean_over(f: float, keep) -> float:
        xs = [x for e, v in errs[f].items() if keep(e) for x in v]
        return statistics.fmean(xs) if xs else math.inf
    held, chosen = [], {}
    for e in exits:
        best = min(grid, key=lambda f: (mean_over(f, lambda x: x != e), f))
        chosen[e] = best
        held += errs[best][e]
    overall = min(grid, key=lambda f: (mean_over(f, lambda x: True), f))
    models.host_info[host]['dispatch'] = dispatch_overhead(profile_rows, overall)
    return {'fraction': overall, 'heldout_mape_pct': 100.0 * statistics.fmean(held),
            'per_exit': chosen}


def plot_end_to_end(points: Mapping[str, Sequence[Tuple[str, float, float]]],
                    summaries: Mapping[str, Mapping[str, Any]], path: Path) -> None:
    """Save a log-log scatter of predicted vs measured time (ms) of each host's side (PNG)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(6, 5.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    lo, hi = math.inf, 0.0
    for host, color in zip(sorted(points), ('tab:red', 'tab:blue', 'tab:green')):
        part = PRIMARY_PART.get(host, 'prefix')
        pts = [(m, p) for q, m, p in points[host] if q == part]
        if not pts:
            continue
        ms, ps = zip(*pts)
        lo, hi = min(lo, *ms, *ps), max(hi, *ms, *ps)
        mape = summaries.get(host, {}).get('mape_pct')
        label = f'{host} {part}es' + (f' (MAPE {mape:.1f} %)' if mape is not None else '')
        ax.scatter(ms, ps, s=14, alpha=0.7, color=color, label=label)
    if hi > 0:
        ax.plot([lo / 1.5, hi * 1.5], [lo / 1.5, hi * 1.5], 'k--', lw=0.8, label='predicted = '
                'measured')
        ax.set_xscale('log')
        ax.set_yscale('log')
    ax.set_xlabel('measured time (ms)')
    ax.set_ylabel('predicted time (ms, sum of per-layer regressions)')
    ax.set_title('Latency regression: every (exit, split) of the model')
    ax.grid(True, which='both', alpha=0.3)
    ax.legend(loc='upper left', fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(str(path))
