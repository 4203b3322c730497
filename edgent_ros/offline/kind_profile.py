"""
Time single leaf ops of every kind modern backbones use and fit per-kind regressions.

Edgent's latency model, extended from the AlexNet's six layer kinds (``offline.profiling``,
``offline.fit``) to the op kinds ``core.chain`` finds in any cut model: conv, grouped and
depthwise conv, batch norm, the activations (ReLU, ReLU6, Hardswish, SiLU, GELU, sigmoid,
hardsigmoid, tanh, leaky ReLU; in place and not), residual add, multiply, concat, max / average /
adaptive pooling, spatial mean, flatten, identity, dropout and linear.

``grid_configs`` draws a seeded sample per kind of a grid whose values are the ones ResNet-18
and MobileNetV2 (224x224) and ``models.resnet_cifar`` (64x64) use (spatial sizes 4..224,
channels 3..1280, kernels 1/3/5/7, strides 1/2, groups, fc widths), combined at random: the
sample covers their ranges without copying their layers. ``probe`` builds one op as a one-node
``torch.fx`` graph, describes it with ``core.chain``'s own op extraction (so its kind, shapes,
FLOPs and parameters are what a cut model's table says) and returns a call of just that op, the
way a block's generated code calls it. ``profile_kinds`` times every configuration at batch 1
under ``torch.no_grad`` with ``profiling.time_call`` (single calls on the edge; windows under a
cgroup robot) in several passes, each in its own seeded random order, with denormals flushed
(an in-place leaky ReLU applied over and over would otherwise reach denormal numbers that a
real model never sees). ``fit_rows`` fits ``core.kind_latency`` regressions from the rows;
``dispatch_overhead_ms`` measures what running ops inside a ``torch.fx`` block adds to timing
them alone.

Known limit (why ``edgent-ros profile --model`` stays the more accurate source): an op timed
alone, call after call, finds its input, weights and output buffer hot in the core's caches;
inside a block each op's data was just displaced by the ops before it. Memory-bound ops pay for
it: timing every op of MobileNetV2's blocks in place of the block (the model's own modules and
tensors, one op at a time) sums to 1/1.3 of the block time on the edge here (batch norm and
ReLU6 of the expanded 144-384-channel maps, depthwise convs), ResNet-18's compute-bound convs
to 1/1.05 and the small 64x64 ResNet's to 1/1.1. No regression on isolated ops sees that.
Evicting the caches before every timed call (tried: a 16 MB write) overshoots instead (blocks
predicted 1.2-2.5x too slow): inside a block the previous op's output is still partly cached.

This module never imports rclpy.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
import json
import operator
from pathlib import Path
import random
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from ..core.chain import op_of
from ..core.kind_latency import (ACTIVATIONS, base_kind, COPY_SUFFIX, fit_kind_latency,
                                 INPLACE_KINDS, KindLatency, KIND_FEATURES, regression_key)
from .profiling import _percentile, HostInfo, time_call, Timing

SPATIAL = (4, 7, 8, 14, 16, 28, 32, 56, 64, 112, 224)
CHANNELS = (3, 16, 24, 32, 64, 96, 128, 144, 160, 192, 256, 320, 384, 512, 576, 960, 1280)
WIDTHS = (64, 128, 256, 512, 576, 960, 1024, 1280, 2048, 4096)
FC_OUT = (10, 100, 128, 256, 512, 1000, 1024, 4096)
MAX_ELEMS = 1_300_000           # per-frame activation elements (96x112x112 = 1.2 M)
MAX_CONV_MACS = 130_000_000     # ResNet-18's largest convs: 118 M
MAX_FC_MACS = 16_000_000
COUNTS: Dict[str, int] = {
    'conv': 150, 'dwconv': 40, 'gconv': 30, 'fc': 30, 'bn': 30,
    'add': 25, 'mul': 15, 'concat': 20, 'maxpool': 25, 'avgpool': 20, 'adaptive_pool': 20,
    'mean': 12, 'flatten': 12, 'identity': 8, 'dropout': 12,
    **{k: 20 for k in ACTIVATIONS}, **{k + COPY_SUFFIX: 12 for k in INPLACE_KINDS}}
QUICK_COUNT = 4
DEFAULT_ROUNDS = 5              # passes over all ops (profile_kinds)
ROW_COLUMNS = (
    'host', 'emulation', 'time_factor', 'threads', 'cpu_quota', 'cpu_period_us',
    'key', 'kind', 'in_shape', 'out_shape', 'flops', 'params', 'detail', 'config',
    'median_ms', 'p10_ms', 'p90_ms', 'mean_ms', 'repeats', 'rounds', 'calls')
_ACT_MODULES: Dict[str, Callable[[bool], nn.Module]] = {
    'relu': lambda ip: nn.ReLU(inplace=ip), 'relu6': lambda ip: nn.ReLU6(inplace=ip),
    'hardswish': lambda ip: nn.Hardswish(inplace=ip), 'silu': lambda ip: nn.SiLU(inplace=ip),
    'hardsigmoid': lambda ip: nn.Hardsigmoid(inplace=ip),
    'leaky_relu': lambda ip: nn.LeakyReLU(0.01, inplace=ip),
    'gelu': lambda ip: nn.GELU(), 'sigmoid': lambda ip: nn.Sigmoid(), 'tanh': lambda ip: nn.Tanh()}


@dataclass(frozen=True)
class KindConfig:
    """One op to time: its regression key, per-frame input shape and builder arguments."""

    key: str
    in_shape: Tuple[int, ...]
    args: Tuple[Tuple[str, Any], ...] = ()

    def arg(self, name: str, default: Any = None) -> Any:
        """Return builder argument ``name``."""
        return dict(self.args).get(name, default)


# ------------------------------------------------------------------------------------- grid

def _out_hw(h: int, k: int, s: int, p: int) -> int:
    return (h + 2 * p - k) // s + 1


def _map(rng: random.Random, min_c: int = 1, max_elems: int = MAX_ELEMS
         ) -> Optional[Tuple[int, int, int]]:
    h = rng.choice(SPATIAL)
    cs = [c for c in CHANNELS if c >= min_c and c * h * h <= max_elems]
    return (rng.choice(cs), h, h) if cs else None


def _draw(key: str, rng: random.Random) -> Optional[KindConfig]:
    """Draw one configuration of ``key`` (None when the draw is out of bounds: draw again)."""
    kind = base_kind(key)
    if kind == 'conv':
        h, k = rng.choice(SPATIAL), rng.choice((1, 1, 3, 3, 3, 5, 7))
        if k == 7 and h < 32:
            return None
        s = rng.choice((1, 2)) if h >= 8 else 1
        ho = _out_hw(h, k, s, k // 2)
        # 7x7 only as a stem on the image (ResNet), 5x5 on few channels (AlexNet's conv2)
        cin = rng.choice([c for c in CHANNELS if c * h * h <= MAX_ELEMS
                          and (k < 5 or c <= 64) and (k < 7 or c == 3)] or [3])
        cout = rng.choice([c for c in CHANNELS[1:] if c * ho * ho <= MAX_ELEMS] or [16])
        if cin * cout * k * k * ho * ho > MAX_CONV_MACS:
            return None
        return KindConfig(key, (cin, h, h), (('out', cout), ('k', k), ('s', s), ('g', 1),
                                             ('bias', rng.random() < 0.3)))
    if kind in ('dwconv', 'gconv'):
        m = _map(rng, 16)
        if m is None:
            return None
        c, h = m[0], m[1]
        k = rng.choice((3, 3, 5)) if kind == 'dwconv' else 3
        s = rng.choice((1, 2)) if h >= 8 else 1
        if kind == 'dwconv':
            g = c
        else:
            gs = [g for g in (2, 4, 8, 16, 32) if c % g == 0 and g < c]
            if not gs:
                return None
            g = rng.choice(gs)
        ho = _out_hw(h, k, s, k // 2)
        if c * (c // g) * k * k * ho * ho > MAX_CONV_MACS:
            return None
        return KindConfig(key, m, (('out', c), ('k', k), ('s', s), ('g', g), ('bias', False)))
    if kind == 'fc':
        n_in, n_out = rng.choice(WIDTHS), rng.choice(FC_OUT)
        if n_in * n_out > MAX_FC_MACS:
            return None
        return KindConfig(key, (n_in,), (('out', n_out),))
    if kind in ('maxpool', 'avgpool'):
        m = _map(rng)
        if m is None:
            return None
        k = rng.choice((2, 3))
        s, p = rng.choice((1, 2)), (rng.choice((0, 1)) if k == 3 else 0)
        if m[1] + 2 * p < k:
            return None
        return KindConfig(key, m, (('k', k), ('s', s), ('p', p)))
    if kind == 'adaptive_pool':
        m = _map(rng)
        if m is None:
            return None
        o = rng.choice([v for v in (1, 1, 1, 2, 4, 7) if v <= m[1]])
        return KindConfig(key, m, (('o', o), ('functional', rng.random() < 0.5)))
    if kind == 'concat':
        h = rng.choice(SPATIAL)
        c1, c2 = rng.choice(CHANNELS[1:]), rng.choice(CHANNELS[1:])
        if (c1 + c2) * h * h > MAX_ELEMS:
            return None
        return KindConfig(key, (c1, h, h), (('other', c2),))
    if kind == 'flatten':
        m = _map(rng)
        if m is None:
            return None
        shape = (m[0], 1, 1) if rng.random() < 0.5 else m
        return KindConfig(key, shape, (('functional', rng.random() < 0.5),))
    if kind in ('dropout',) + ACTIVATIONS and rng.random() < 0.2:
        return KindConfig(key, (rng.choice(WIDTHS),))
    m = _map(rng)
    return None if m is None else KindConfig(key, m)


def grid_configs(seed: int = 0, counts: Optional[Mapping[str, int]] = None,
                 quick: bool = False) -> List[KindConfig]:
    """
    Return a seeded sample of distinct configurations per regression key.

    ``counts`` (default ``COUNTS``: ~700 ops, all ``KIND_FEATURES`` kinds and the copy variants
    of the in-place activations) says how many per key; ``quick``: ``QUICK_COUNT`` per key.
    """
    rng = random.Random(seed)
    counts = dict(counts if counts is not None else COUNTS)
    out: List[KindConfig] = []
    for key, n in counts.items():
        if base_kind(key) not in KIND_FEATURES:
            raise ValueError(f'unknown op kind {key!r}; known: {sorted(KIND_FEATURES)}')
        n = min(n, QUICK_COUNT) if quick else n
        seen = set()
        for _ in range(500 * max(1, n)):
            if len(seen) >= n:
                break
            cfg = _draw(key, rng)
            if cfg is not None and cfg not in seen:
                seen.add(cfg)
                out.append(cfg)
    return out


# ------------------------------------------------------------------------------------ probes

class _Binary(nn.Module):
    """``x <op> other`` (traced as one call_function node, as ``x + y`` in a residual block)."""

    def __init__(self, fn: Callable[[Any, Any], Any], other: torch.Tensor):
        super().__init__()
        self.fn = fn
        self.register_buffer('other', other)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x, self.other)


class _Cat(nn.Module):
    def __init__(self, other: torch.Tensor):
        super().__init__()
        self.register_buffer('other', other)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.other], 1)


class _Func(nn.Module):
    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def _flatten(x: torch.Tensor) -> torch.Tensor:
    return torch.flatten(x, 1)


def _mean(x: torch.Tensor) -> torch.Tensor:
    return x.mean((2, 3))


def _module(cfg: KindConfig, g: torch.Generator) -> nn.Module:
    """Return a module whose traced graph is the one op of ``cfg``."""
    kind = base_kind(cfg.key)
    c = cfg.in_shape[0]
    if kind in ('conv', 'dwconv', 'gconv'):
        k = cfg.arg('k')
        return nn.Sequential(nn.Conv2d(c, cfg.arg('out'), k, cfg.arg('s'), k // 2,
                                       groups=cfg.arg('g'), bias=cfg.arg('bias')))
    if kind == 'fc':
        return nn.Sequential(nn.Linear(c, cfg.arg('out')))
    if kind == 'bn':
        bn = nn.BatchNorm2d(c)
        bn.running_mean.normal_(generator=g)
        bn.running_var.uniform_(0.5, 2.0, generator=g)
        return nn.Sequential(bn)
    if kind in ACTIVATIONS:
        return nn.Sequential(_ACT_MODULES[kind](not cfg.key.endswith(COPY_SUFFIX)))
    if kind in ('maxpool', 'avgpool'):
        cls = nn.MaxPool2d if kind == 'maxpool' else nn.AvgPool2d
        return nn.Sequential(cls(cfg.arg('k'), cfg.arg('s'), cfg.arg('p')))
    if kind == 'adaptive_pool':
        o = cfg.arg('o')
        if cfg.arg('functional'):
            return _Func(lambda x: nn.functional.adaptive_avg_pool2d(x, (o, o)))
        return nn.Sequential(nn.AdaptiveAvgPool2d(o))
    if kind in ('add', 'mul'):
        return _Binary(operator.add if kind == 'add' else operator.mul,
                       torch.randn((1,) + cfg.in_shape, generator=g))
    if kind == 'concat':
        return _Cat(torch.randn((1, cfg.arg('other')) + cfg.in_shape[1:], generator=g))
    if kind == 'mean':
        return _Func(_mean)
    if kind == 'flatten':
        return _Func(_flatten) if cfg.arg('functional') else nn.Sequential(nn.Flatten(1))
    if kind == 'identity':
        return nn.Sequential(nn.Identity())
    if kind == 'dropout':
        return nn.Sequential(nn.Dropout(0.2))
    raise ValueError(f'no probe for op kind {cfg.key!r}')


@dataclass
class Probe:
    """One op ready to time: its description (a ``core.chain.Op`` dict) and a call of it."""

    op: Dict[str, Any]
    call: Callable[[], Any]


def probe(cfg: KindConfig, seed: int = 0) -> Probe:
    """
    Build ``cfg``'s op and describe it with ``core.chain``'s op extraction.

    The call runs the node's target on real tensors exactly as a block's generated code does
    (a module call, a function or a tensor method). The op gets ``detail['call']`` (the fx
    node's op) and an activation ``detail['inplace']``. Raises ValueError when the traced op
    is not of ``cfg``'s kind.
    """
    g = torch.Generator().manual_seed(seed)
    mod = _module(cfg, g).eval()
    gm = fx.symbolic_trace(mod)
    x = torch.randn((1,) + cfg.in_shape, generator=g)
    with torch.no_grad():
        ShapeProp(gm).propagate(x)
    nodes = [n for n in gm.graph.nodes
             if n.op in ('call_module', 'call_function', 'call_method')]
    if len(nodes) != 1:
        raise ValueError(f'{cfg.key}: probe traced to {len(nodes)} ops, expected 1')
    node = nodes[0]
    op = op_of(gm, node)
    if op is None or op.kind != base_kind(cfg.key):
        raise ValueError(f'{cfg.key}: probe traced to kind {op.kind if op else None!r}')
    env: Dict[fx.Node, Any] = {}
    for n in gm.graph.nodes:
        if n.op == 'placeholder':
            env[n] = x
        elif n.op == 'get_attr':
            env[n] = getattr(gm, str(n.target))
    args = fx.node.map_arg(node.args, lambda n: env[n])
    kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
    op.detail = dict(op.detail, call=node.op)
    if node.op == 'call_module':
        leaf = gm.get_submodule(str(node.target))
        if base_kind(cfg.key) in ACTIVATIONS:
            op.detail['inplace'] = bool(getattr(leaf, 'inplace', False))

        def call() -> Any:
            return leaf(*args, **kwargs)
    elif node.op == 'call_function':
        fn = node.target

        def call() -> Any:
            return fn(*args, **kwargs)
    else:
        method = str(node.target)

        def call() -> Any:
            return getattr(args[0], method)(*args[1:], **kwargs)
    d = op.to_dict()
    if regression_key(d) != cfg.key:
        raise ValueError(f'{cfg.key}: probe op has regression key {regression_key(d)!r}')
    return Probe(d, call)


# ---------------------------------------------------------------------------------- timing

def _shape_str(shape: Sequence[int]) -> str:
    return 'x'.join(str(int(d)) for d in shape) or '-'


def _parse_shape(text: str) -> List[int]:
    return [] if text in ('', '-') else [int(t) for t in text.split('x')]


def profile_kinds(configs: Sequence[KindConfig], host: HostInfo, timing: Timing,
                  window_s: float = 0.0, seed: int = 0, rounds: int = 1,
                  log: Optional[Callable[[str], None]] = None,
                  after_round: Optional[Callable[[int], None]] = None
                  ) -> List[Dict[str, Any]]:
    """
    Time every configuration at batch 1 on this host; return one row (``ROW_COLUMNS``) each.

    ``rounds`` passes over all configurations, each in its own seeded random order, time every
    op ``timing.repeats`` times per pass; a row's ``median_ms`` is the median of its passes'
    medians (``p10_ms`` / ``p90_ms`` over them too). Spreading an op's samples over the whole
    run makes a burst of load elsewhere on the host (another process on the other hyperthread
    made the same conv 1.7x slower here) hit every kind alike instead of a few ops. Under
    ``torch.no_grad``, with denormals flushed; times are multiplied by ``host.time_factor``.
    ``log`` gets a progress line every few seconds; ``after_round(r)`` (if given) runs after
    pass ``r`` (0-based), e.g. to measure something else under the same conditions.
    """
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f'rounds must be a positive integer, got {rounds!r}')
    per: List[List[Dict[str, Any]]] = [[] for _ in configs]
    ops: List[Optional[Dict[str, Any]]] = [None] * len(configs)
    total = rounds * len(configs)
    done = 0
    t0 = last = time.perf_counter()
    torch.set_flush_denormal(True)
    try:
        with torch.no_grad():
            for rnd in range(rounds):
                order = list(range(len(configs)))
                random.Random(seed * 1000 + rnd).shuffle(order)
                for i in order:
                    p = probe(configs[i], seed + i)
                    ops[i] = p.op
                    per[i].append(time_call(p.call, timing, window_s, host.time_factor))
                    done += 1
                    now = time.perf_counter()
                    if log is not None and (now - last > 5.0 or done == total):
                        last = now
                        log(f'[{done}/{total}] ops timed, round {rnd + 1}/{rounds} '
                            f'({now - t0:.0f} s, ETA {(now - t0) / done * (total - done):.0f} s)')
                if after_round is not None:
                    after_round(rnd)
    finally:
        torch.set_flush_denormal(False)
    rows = []
    for cfg, op, stats in zip(configs, ops, per):
        meds = sorted(s['median_ms'] for s in stats)
        row = dict(host.columns())
        row.update({'key': cfg.key, 'kind': op['kind'], 'in_shape': _shape_str(op['in_shape']),
                    'out_shape': _shape_str(op['out_shape']), 'flops': op['flops'],
                    'params': op['params'], 'detail': json.dumps(op['detail'], sort_keys=True),
                    'config': json.dumps(dict(cfg.args), sort_keys=True),
                    'median_ms': statistics.median(meds), 'p10_ms': _percentile(meds, 10),
                    'p90_ms': _percentile(meds, 90),
                    'mean_ms': statistics.fmean(s['mean_ms'] for s in stats),
                    'repeats': sum(s['repeats'] for s in stats), 'rounds': rounds,
                    'calls': sum(s['calls'] for s in stats)})
        rows.append(row)
    return rows


class _Stage(nn.Module):
    """``n`` identity ops called one after the other, as leaves of a block."""

    def __init__(self, n: int):
        super().__init__()
        for k in range(n):
            setattr(self, f'op{k}', nn.Identity())
        self.n = n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for k in range(self.n):
            x = getattr(self, f'op{k}')(x)
        return x


class _Net(nn.Module):
    """``layer1.0.op<k>``: the module paths of a block cut at depth 2 (a ResNet stage)."""

    def __init__(self, n: int):
        super().__init__()
        self.layer1 = nn.Sequential(_Stage(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer1(x)


def dispatch_overhead_ms(timing: Timing, time_factor: float = 1.0, n: int = 8,
                         trials: int = 5) -> Tuple[float, float]:
    """
    Return ``(block_overhead_ms, op_overhead_ms)``: what a ``torch.fx`` block adds to its ops.

    The block overhead is the time of an empty traced block (``return x``). The per-op
    overhead is what one module op adds inside a traced block over the same module called
    alone (as ``profile_kinds`` calls an op): a block of ``n`` identity modules at module paths
    ``layer1.0.op<k>`` (the generated code looks each up as ``getattr(self.layer1, "0").op<k>``,
    as in a cut model) minus the empty block, per op, minus one identity called alone. Medians
    over ``trials``; both clamped at 0.
    """
    if n < 1 or trials < 1:
        raise ValueError(f'n and trials must be >= 1, got {n}, {trials}')
    x = torch.zeros(1, 8)
    ident = nn.Identity()
    g = fx.Graph()
    g.output(g.placeholder('x'))
    empty = fx.GraphModule(nn.Module(), g)
    many = fx.symbolic_trace(_Net(n))
    blocks, per_op = [], []
    with torch.no_grad():
        for _ in range(trials):
            t_iso = time_call(lambda: ident(x), timing, 0.0, time_factor)['median_ms']
            t_empty = time_call(lambda: empty(x), timing, 0.0, time_factor)['median_ms']
            t_many = time_call(lambda: many(x), timing, 0.0, time_factor)['median_ms']
            blocks.append(t_empty)
            per_op.append((t_many - t_empty) / n - t_iso)
    return max(0.0, statistics.median(blocks)), max(0.0, statistics.median(per_op))


def row_op(row: Mapping[str, Any]) -> Dict[str, Any]:
    """Rebuild the op dict of a profile row (inverse of the columns ``profile_kinds`` writes)."""
    try:
        return {'kind': row['kind'], 'in_shape': _parse_shape(str(row['in_shape'])),
                'out_shape': _parse_shape(str(row['out_shape'])), 'flops': int(row['flops']),
                'params': int(row['params']), 'detail': json.loads(row['detail'] or '{}')}
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f'malformed kind profile row {dict(row)!r}: {exc}') from None


def write_rows(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Write profile rows as CSV (``ROW_COLUMNS``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=ROW_COLUMNS, extrasaction='ignore')
        w.writeheader()
        w.writerows(rows)


def read_rows(path: Path) -> List[Dict[str, str]]:
    """Read profile rows written by ``write_rows``."""
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def fit_rows(rows: Sequence[Mapping[str, Any]], host: str,
             overheads_ms: Tuple[float, float] = (0.0, 0.0),
             info: Optional[Mapping[str, Any]] = None, seed: int = 0) -> KindLatency:
    """Fit ``host``'s regressions from its profile rows; ``overheads_ms``: (block, per op)."""
    mine = [r for r in rows if r['host'] == host]
    if not mine:
        raise ValueError(f'no profile rows of host {host!r}')
    return fit_kind_latency(host, [(row_op(r), float(r['median_ms'])) for r in mine],
                            overheads_ms[0], overheads_ms[1], info, seed)


def run_profile_kinds(out: Path, host: HostInfo, timing: Timing, csv_out: Optional[Path] = None,
                      window_s: float = 0.0, quick: bool = False, seed: int = 0,
                      rounds: int = DEFAULT_ROUNDS,
                      log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)
                      ) -> Dict[str, Any]:
    """Profile the grid on this host, fit, merge the host's regressions into ``out`` (JSON)."""
    configs = grid_configs(seed, quick=quick)
    log(f'{host.host}: timing {len(configs)} ops of {len({c.key for c in configs})} kinds '
        f'({host.threads} thread(s))')
    t0 = time.perf_counter()
    rows = profile_kinds(configs, host, timing, window_s, seed, rounds, log)
    if csv_out is not None:
        write_rows(rows, csv_out)
    overheads = dispatch_overhead_ms(Timing(max(51, timing.repeats), timing.warmup),
                                     host.time_factor)
    info = dict(host.columns(), repeats=timing.repeats, warmup=timing.warmup, rounds=rounds,
                torch=torch.__version__, ops=len(rows), seed=seed, quick=quick)
    klat = fit_rows(rows, host.host, overheads, info, seed)
    klat.save(Path(out))
    cv = {k: r.stats.get('cv_mape_pct') for k, r in klat.regressions.items()}
    return {'host': host.host, 'ops': len(rows), 'kinds': len(klat.regressions),
            'block_overhead_ms': round(overheads[0], 5),
            'op_overhead_ms': round(overheads[1], 5), 'out': str(out),
            'csv': str(csv_out) if csv_out else None,
            'cv_mape_pct': {k: (round(v, 1) if v is not None else None)
                            for k, v in sorted(cv.items())},
            'seconds': round(time.perf_counter() - t0, 1)}
