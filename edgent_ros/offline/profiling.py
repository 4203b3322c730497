"""
Offline layer profiling on the robot and on the edge (Edgent phase 1, issue 4).

Edgent predicts the latency of every layer from a regression per (host, layer kind) fitted on
measured layer latencies. This module measures them: ``profile_configs`` generates many layer
configurations per kind (a seeded sample of a grid of input sizes, channels, kernels, strides,
filters and fc widths, plus the exact layers of all five branches of the model), ``profile_layers``
times each one at batch size 1 (one frame, as the nodes run it), and ``measure_branches`` times
every prefix ``[0, s)`` and suffix ``[s, end)`` of the real model for the end-to-end check of the
regression (``offline.fit``).

Hosts:

* ``edge``: this machine as it is (``torch`` intra-op threads configurable).
* ``robot``: the same machine made several times slower. With root and a cgroup v1 ``cpu``
  controller the process moves into ``/sys/fs/cgroup/cpu/edgent_robot`` with a CFS quota of
  ``cpu_quota`` of one CPU per ``cpu.cfs_period_us`` (``RobotCpuLimit``), emulation
  ``'cgroup'``. Otherwise it runs on one thread and multiplies every time by a documented
  slowdown factor (default ``1 / cpu_quota``), emulation ``'thread+factor'``. The CSVs record
  which one was used so reports can say so.

Timing under a CFS quota: a call much shorter than the quota runs at full speed unless it
happens to straddle the moment the cgroup is throttled, so the median of single calls shows no
slowdown at all (measured here: 0.170 ms with a 25 % quota vs 0.169 ms without). Each repeat on
the cgroup robot therefore runs the layer back to back for a window of at least two CFS periods
and reports the wall time per call of that window (the long-run time per call, 4.1x slower at a
25 % quota). Repeats on the edge and on the thread+factor robot are single calls.

Limit of the cgroup robot: a CFS quota slows sustained load, not one short burst. A whole
frame of this model takes ~2 ms of CPU; run once per frame with idle gaps between frames it
took 2.0-2.3 ms under a 25 % quota with periods of 100, 10 or 4 ms alike (vs 1.8 ms free),
because quota is enforced at scheduler-tick granularity. The numbers measured here are the
throughput-limited (back-to-back) times; a live robot node only sees them while it is busy.

This module never imports rclpy.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
import gc
import json
import math
import os
from pathlib import Path
import platform
import random
import statistics
import sys
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch

from ..core.arch import (AlexNetConfig, INPUT_SHAPE, layer_flops, layer_table, LayerSpec,
                         NUM_EXITS, numel, output_shape, SHIPPED_CONFIG)
from ..core.artifacts import ARTIFACT_DIR, WEIGHTS_FILE
from ..core.latency import layer_features
from ..core.model import build_layer, MultiExitAlexNet, normalize_images
from ..core.weights import load_model
from .hosts import (BRANCH_PARTS, cfs_quota_us, CGROUP_CPU_ROOT, cgroup_dir, cgroup_pids,
                    cgroup_v1_cpu_available, current_cpu_cgroup, DEFAULT_CGROUP,
                    DEFAULT_CPU_PERIOD_US, DEFAULT_CPU_QUOTA, DEFAULT_ROBOT_THREADS,
                    DEFAULT_WARMUP, ensure_cgroup, move_pid, remove_cgroup)

MIN_WINDOW_S = 0.05               # lower bound of a cgroup timing window (s)
PROFILE_COLUMNS = (
    'host', 'emulation', 'time_factor', 'threads', 'cpu_quota', 'cpu_period_us',
    'kind', 'source', 'out_channels', 'kernel', 'stride', 'padding', 'p',
    'in_shape', 'out_shape', 'input_size', 'output_size', 'kernel_filters', 'flops',
    'median_ms', 'p10_ms', 'p90_ms', 'mean_ms', 'repeats', 'calls')
BRANCH_COLUMNS = (
    'host', 'emulation', 'time_factor', 'threads', 'cpu_quota', 'cpu_period_us',
    'model_id', 'exit', 'part', 'split', 'start', 'stop', 'n_layers', 'in_shape',
    'median_ms', 'p10_ms', 'p90_ms', 'mean_ms', 'repeats', 'calls')


@dataclass(frozen=True)
class ProfileConfig:
    """One layer to time: its spec and its per-frame input shape ``(C, H, W)`` or ``(N,)``."""

    spec: LayerSpec
    in_shape: Tuple[int, ...]
    source: str = 'grid'       # 'grid' or 'model:<layer name>'

    def key(self) -> Tuple[Any, ...]:
        """Return what determines the layer's cost (the name does not)."""
        s = self.spec
        return (s.kind, s.out_channels, s.kernel, s.stride, s.padding, s.p, self.in_shape)


def _model_configs(cfg: AlexNetConfig) -> List[ProfileConfig]:
    out = []
    for e in range(1, NUM_EXITS + 1):
        for row in layer_table(cfg, e):
            out.append(ProfileConfig(row.spec, tuple(row.in_shape), f'model:{row.name}'))
    return out


def _grid_configs(rng: random.Random, counts: Dict[str, int]) -> List[ProfileConfig]:
    """Sample ``counts[kind]`` distinct grid configurations per kind (seeded)."""
    sizes = (4, 6, 8, 12, 16, 24, 32)
    chans = (3, 8, 16, 32, 48, 64, 96, 128, 192, 256)
    widths = (16, 32, 64, 128, 256, 384, 512, 768, 1024, 2048, 4096, 8192)

    def conv() -> Optional[ProfileConfig]:
        h, c, k = rng.choice(sizes), rng.choice(chans[:9]), rng.choice((1, 3, 5))
        s, f = rng.choice((1, 2)), rng.choice((8, 16, 32, 64, 96, 128, 192, 256))
        spec = LayerSpec('conv', 'grid_conv', f, k, s, k // 2)
        macs = layer_flops(spec, (c, h, h)) // 2
        return ProfileConfig(spec, (c, h, h)) if macs <= 40_000_000 else None

    def pool() -> Optional[ProfileConfig]:
        h, c, k = rng.choice(sizes), rng.choice(chans), rng.choice((2, 3))
        s, pad = rng.choice((1, 2)), rng.choice((0, 1)) if k == 3 else 0
        if h + 2 * pad < k:
            return None
        return ProfileConfig(LayerSpec('pool', 'grid_pool', 0, k, s, pad), (c, h, h))

    def elementwise(kind: str) -> ProfileConfig:
        spec = LayerSpec(kind, f'grid_{kind}', p=0.3 if kind == 'dropout' else 0.0)
        if rng.random() < 0.3:
            return ProfileConfig(spec, (rng.choice(widths),))
        h = rng.choice((1, 2) + sizes)
        return ProfileConfig(spec, (rng.choice(chans), h, h))

    def fc() -> Optional[ProfileConfig]:
        out_f = rng.choice((10, 32, 64, 128, 192, 256, 384, 512, 1024))
        if rng.random() < 0.5:
            in_shape: Tuple[int, ...] = (rng.choice(widths),)
        else:
            h = rng.choice((1, 2, 4, 8))
            in_shape = (rng.choice(chans), h, h)
        if numel(in_shape) * out_f > 16_000_000:
            return None
        return ProfileConfig(LayerSpec('fc', 'grid_fc', out_f), in_shape)

    makers: Dict[str, Callable[[], Optional[ProfileConfig]]] = {
        'conv': conv, 'pool': pool, 'fc': fc,
        'relu': lambda: elementwise('relu'), 'dropout': lambda: elementwise('dropout')}
    out: List[ProfileConfig] = []
    for kind, n in counts.items():
        seen = set()
        for _ in range(200 * n):        # bounded: the grids are far larger than n
            if len(seen) >= n:
                break
            pc = makers[kind]()
            if pc is not None and pc.key() not in seen:
                seen.add(pc.key())
                out.append(pc)
    return out


def profile_configs(quick: bool, cfg: Optional[AlexNetConfig] = None, seed: int = 0
                    ) -> List[ProfileConfig]:
    """
    Return the layer configurations to profile, without duplicates.

    Full set (``quick=False``): every distinct layer of all five branches of ``cfg`` (default
    ``core.arch.SHIPPED_CONFIG``) plus a seeded sample of a grid per kind: conv (H=W 4..32,
    3..192 input channels, kernel 1/3/5, stride 1/2, 8..256 filters, at most 40 M MACs), pool
    (kernel 2/3, stride 1/2, padding 0/1), relu and dropout (3-D and flat inputs), fc (16..8192
    inputs, 10..1024 outputs, at most 16 M MACs): about 330 configurations.
    Quick set: two model layers and two grid configurations per kind (20), for tests and smoke
    runs; it does not cover every model layer.
    """
    if cfg is None:
        cfg = SHIPPED_CONFIG
    rng = random.Random(seed)
    model = _model_configs(cfg)
    if quick:
        per_kind: Dict[str, List[ProfileConfig]] = {}
        for pc in model:
            lst = per_kind.setdefault(pc.spec.kind, [])
            if len(lst) < 2 and all(q.key() != pc.key() for q in lst):
                lst.append(pc)
        model = [pc for lst in per_kind.values() for pc in lst]
        grid = _grid_configs(rng, {'conv': 2, 'relu': 2, 'pool': 2, 'dropout': 2, 'fc': 2})
    else:
        grid = _grid_configs(rng, {'conv': 130, 'relu': 40, 'pool': 50, 'dropout': 30,
                                   'fc': 50})
    out, seen = [], set()
    for pc in model + grid:
        if pc.key() not in seen:
            seen.add(pc.key())
            out.append(pc)
    return out


class RobotCpuLimit:
    """
    Context manager that makes this process an emulated slow robot CPU.

    With root and a cgroup v1 ``cpu`` controller: a stale cgroup ``name`` left empty by a crashed
    run is removed, the cgroup is (re)created with ``cpu.cfs_period_us = period_us`` and
    ``cpu.cfs_quota_us = quota * period_us``, the process moves in and ``torch`` uses
    ``threads`` intra-op threads; on exit it moves back to its previous cgroup, the cgroup is
    removed (unless other processes are still inside) and the thread count is restored.
    ``emulation == 'cgroup'`` and ``time_factor == 1``.

    Otherwise (``allow_fallback``): ``torch`` runs on one thread and callers multiply measured
    times by ``time_factor = slowdown_factor`` (default ``1 / quota``: a ``quota`` share of one
    CPU is that much slower than a whole one); ``emulation == 'thread+factor'``.
    """

    def __init__(self, quota: float = DEFAULT_CPU_QUOTA, threads: int = DEFAULT_ROBOT_THREADS,
                 period_us: int = DEFAULT_CPU_PERIOD_US, name: str = DEFAULT_CGROUP,
                 slowdown_factor: Optional[float] = None, allow_fallback: bool = True,
                 force_factor: bool = False):
        """Validate the settings (ValueError with the bad value); nothing changes until enter."""
        cfs_quota_us(quota, period_us)      # validates both
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f'threads must be a positive integer, got {threads!r}')
        if slowdown_factor is not None and not slowdown_factor > 0:
            raise ValueError(f'slowdown_factor must be > 0, got {slowdown_factor!r}')
        cgroup_dir(name)                    # validates the name
        self.quota = float(quota)
        self.threads = threads
        self.period_us = period_us
        self.name = name
        self.slowdown_factor = float(slowdown_factor or 1.0 / quota)
        self.allow_fallback = allow_fallback
        self.force_factor = bool(force_factor)
        self.emulation = ''
        self.time_factor = 1.0
        self._old_threads = 0
        self._old_cgroup: Optional[str] = None

    def __enter__(self) -> 'RobotCpuLimit':
        """Move into the cgroup (or set up the fallback); return self."""
        self._old_threads = torch.get_num_threads()
        if cgroup_v1_cpu_available() and not self.force_factor:
            if cgroup_dir(self.name).is_dir() and not cgroup_pids(self.name):
                remove_cgroup(self.name)     # left behind by a crashed run
            ensure_cgroup(self.name, self.quota, self.period_us)
            self._old_cgroup = current_cpu_cgroup()
            try:
                move_pid(os.getpid(), self.name)
            except OSError:
                remove_cgroup(self.name)
                self._old_cgroup = None
                raise
            torch.set_num_threads(self.threads)
            self.emulation, self.time_factor = 'cgroup', 1.0
        elif self.allow_fallback or self.force_factor:
            torch.set_num_threads(1)
            self.threads = 1
            self.emulation, self.time_factor = 'thread+factor', self.slowdown_factor
        else:
            raise PermissionError(f'no writable cgroup v1 cpu controller at {CGROUP_CPU_ROOT} '
                                  '(needs root); cannot emulate the robot CPU')
        return self

    def __exit__(self, *exc_info: Any) -> None:
        """Restore threads, move back to the previous cgroup and remove ours."""
        torch.set_num_threads(self._old_threads)
        if self._old_cgroup is not None:
            try:
                move_pid(os.getpid(), self._old_cgroup)
            except OSError:
                move_pid(os.getpid(), '/')
            self._old_cgroup = None
            remove_cgroup(self.name)

    def window_s(self) -> float:
        """Return the minimum timing window (s) per repeat: two CFS periods under the cgroup."""
        if self.emulation != 'cgroup':
            return 0.0
        return max(MIN_WINDOW_S, 2 * self.period_us / 1e6)


@dataclass
class HostInfo:
    """How the measurements of one host were taken (written into every CSV row)."""

    host: str                       # 'robot' | 'edge'
    emulation: str = 'none'         # 'none' (edge) | 'cgroup' | 'thread+factor'
    threads: int = 1                # torch intra-op threads
    cpu_quota: Optional[float] = None     # fraction of one CPU (robot)
    cpu_period_us: Optional[int] = None   # CFS period (robot, cgroup)
    time_factor: float = 1.0        # measured times were multiplied by this
    window_s: float = 0.0           # minimum wall time per repeat (cgroup robot)

    def columns(self) -> Dict[str, Any]:
        """Return the per-row host columns of the CSVs."""
        return {'host': self.host, 'emulation': self.emulation, 'time_factor': self.time_factor,
                'threads': self.threads,
                'cpu_quota': '' if self.cpu_quota is None else self.cpu_quota,
                'cpu_period_us': '' if self.cpu_period_us is None else self.cpu_period_us}


@dataclass
class Timing:
    """Repeat counts of one measurement."""

    repeats: int = 15               # timed samples (single calls, or windows under a cgroup)
    warmup: int = DEFAULT_WARMUP    # untimed calls first

    def __post_init__(self) -> None:
        """Raise ValueError for non-positive repeats or negative warm-up."""
        if isinstance(self.repeats, bool) or not isinstance(self.repeats, int) \
                or self.repeats < 1:
            raise ValueError(f'repeats must be a positive integer, got {self.repeats!r}')
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise ValueError(f'warmup must be a non-negative integer, got {self.warmup!r}')


def _percentile(sorted_vals: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile ``q`` in [0, 100] of sorted values."""
    if len(sorted_vals) == 1:
        return sorted_vals[0]
    pos = (len(sorted_vals) - 1) * q / 100.0
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (pos - lo)


def time_call(fn: Callable[[], Any], timing: Timing, window_s: float = 0.0,
              time_factor: float = 1.0) -> Dict[str, Any]:
    """
    Time ``fn`` and return ``median_ms``, ``p10_ms``, ``p90_ms``, ``mean_ms`` per call.

    Each of ``timing.repeats`` samples is one call, or, with ``window_s > 0``, as many calls
    back to back as fill ``window_s`` seconds, divided by their number. All times are
    multiplied by ``time_factor``. Garbage collection is off while timing.
    """
    for _ in range(timing.warmup):
        fn()
    samples: List[float] = []
    calls = 0
    clock = time.perf_counter
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        for _ in range(timing.repeats):
            n = 0
            t0 = clock()
            while True:
                fn()
                n += 1
                elapsed = clock() - t0
                if elapsed >= window_s:
                    break
            samples.append(elapsed / n)
            calls += n
    finally:
        if gc_was_on:
            gc.enable()
    ms = sorted(1e3 * time_factor * s for s in samples)
    return {'median_ms': statistics.median(ms), 'p10_ms': _percentile(ms, 10),
            'p90_ms': _percentile(ms, 90), 'mean_ms': statistics.fmean(ms),
            'repeats': timing.repeats, 'calls': calls}


def _shape_str(shape: Sequence[int]) -> str:
    return 'x'.join(str(int(d)) for d in shape)


def parse_shape(text: str) -> Tuple[int, ...]:
    """Parse ``'64x16x16'`` into ``(64, 16, 16)``; raise ValueError for anything else."""
    try:
        shape = tuple(int(t) for t in str(text).split('x'))
    except ValueError:
        raise ValueError(f'bad shape {text!r}, expected e.g. "64x16x16"') from None
    if not shape or any(d < 1 for d in shape):
        raise ValueError(f'bad shape {text!r}, expected positive dimensions')
    return shape


def config_row(pc: ProfileConfig, host: HostInfo, stats: Dict[str, Any]) -> Dict[str, Any]:
    """Return one profile CSV row (``PROFILE_COLUMNS``) for ``pc`` measured on ``host``."""
    s = pc.spec
    out = output_shape(s, pc.in_shape)
    feats = layer_features(s, pc.in_shape)
    row = host.columns()
    row.update({
        'kind': s.kind, 'source': pc.source, 'out_channels': s.out_channels,
        'kernel': s.kernel, 'stride': s.stride, 'padding': s.padding, 'p': s.p,
        'in_shape': _shape_str(pc.in_shape), 'out_shape': _shape_str(out),
        'input_size': numel(pc.in_shape), 'output_size': numel(out),
        'kernel_filters': feats[1] if s.kind == 'conv' else '',
        'flops': layer_flops(s, pc.in_shape)})
    row.update(stats)
    return row


def spec_from_row(row: Dict[str, str]) -> Tuple[LayerSpec, Tuple[int, ...]]:
    """Rebuild ``(LayerSpec, in_shape)`` from a profile CSV row (inverse of ``config_row``)."""
    try:
        spec = LayerSpec(row['kind'], row.get('source') or 'layer', int(row['out_channels']),
                         int(row['kernel']), int(row['stride']), int(row['padding']),
                         float(row['p']))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f'malformed profile row {row!r}: {exc}') from None
    return spec, parse_shape(row['in_shape'])


def profile_layers(configs: Iterable[ProfileConfig], host: HostInfo, timing: Timing,
                   progress: bool = True, seed: int = 0) -> List[Dict[str, Any]]:
    """
    Time every configuration at batch size 1 on the current host; return CSV rows.

    Modules come from ``model.build_layer(spec, in_shape, batchnorm=False)`` in eval mode under
    ``torch.inference_mode``; inputs are ``(1, *in_shape)`` standard-normal tensors, 4-D ones
    channels-last: the layout the model's activations have from the (NHWC) image on. The
    configurations run in a seeded random order (so drifts in machine load spread over all
    kinds); rows come back in the order given.
    """
    from tqdm import tqdm
    configs = list(configs)
    order = list(range(len(configs)))
    random.Random(seed).shuffle(order)
    gen = torch.Generator().manual_seed(seed)
    rows: List[Optional[Dict[str, Any]]] = [None] * len(configs)
    with torch.inference_mode():
        for i in tqdm(order, desc=f'profile {host.host}', unit='layer', file=sys.stderr,
                      disable=not progress):
            pc = configs[i]
            module = build_layer(pc.spec, pc.in_shape, batchnorm=False).eval()
            x = torch.randn((1, *pc.in_shape), generator=gen)
            if x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            stats = time_call(lambda: module(x), timing, host.window_s, host.time_factor)
            rows[i] = config_row(pc, host, stats)
    return [r for r in rows if r is not None]


def default_input(seed: int = 0) -> torch.Tensor:
    """Return a normalized random uint8 RGB pseudo-image ``(1, 3, 32, 32)`` (seeded)."""
    gen = torch.Generator().manual_seed(seed)
    img = torch.randint(0, 256, (1, *INPUT_SHAPE[1:], INPUT_SHAPE[0]), generator=gen,
                        dtype=torch.uint8)
    return normalize_images(img)


def measure_branches(model: MultiExitAlexNet, host: HostInfo, timing: Timing,
                     parts: Sequence[str] = BRANCH_PARTS, x: Optional[torch.Tensor] = None,
                     progress: bool = True) -> List[Dict[str, Any]]:
    """
    Time every prefix, suffix and single layer of every branch of the real model.

    For exit ``e`` with ``n`` layers: ``prefix`` rows time ``model.run(., e, 0, s)`` for
    ``s = 1..n`` (robot side of split ``s``), ``suffix`` rows ``model.run(., e, s, n)`` for
    ``s = 0..n-1`` (edge side), ``layer`` rows each layer ``[i, i+1)`` alone. Every part gets its
    real input: the activation the branch produces at its start from ``x`` (default
    ``default_input()``), batch size 1. Returns ``BRANCH_COLUMNS`` rows.
    """
    bad = [p for p in parts if p not in BRANCH_PARTS]
    if bad or not parts:
        raise ValueError(f'parts must be a non-empty subset of {BRANCH_PARTS}, got {parts!r}')
    from tqdm import tqdm
    model = model.eval()
    x = default_input() if x is None else x
    jobs = []
    for e in range(1, NUM_EXITS + 1):
        n = model.branch_len(e)
        if 'prefix' in parts:
            jobs += [(e, 'prefix', s, 0, s) for s in range(1, n + 1)]
        if 'suffix' in parts:
            jobs += [(e, 'suffix', s, s, n) for s in range(n)]
        if 'layer' in parts:
            jobs += [(e, 'layer', '', i, i + 1) for i in range(n)]
    rows = []
    with torch.inference_mode():
        acts: Dict[Tuple[int, int], torch.Tensor] = {}
        for e in range(1, NUM_EXITS + 1):
            a = x
            for i in range(model.branch_len(e) + 1):
                acts[(e, i)] = a
                if i < model.branch_len(e):
                    a = model.run(a, e, i, i + 1)
        for e, part, split, start, stop in tqdm(jobs, desc=f'branches {host.host}',
                                                unit='part', file=sys.stderr,
                                                disable=not progress):
            inp = acts[(e, start)]
            stats = time_call(lambda: model.run(inp, e, start, stop), timing, host.window_s,
                              host.time_factor)
            row = host.columns()
            row.update({'model_id': model.model_id, 'exit': e, 'part': part, 'split': split,
                        'start': start, 'stop': stop, 'n_layers': stop - start,
                        'in_shape': _shape_str(inp.shape[1:])})
            row.update(stats)
            rows.append(row)
    return rows


def write_csv(rows: Sequence[Dict[str, Any]], path: Path, columns: Sequence[str]) -> None:
    """Write ``rows`` with exactly ``columns`` (floats with 6 significant decimals)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open('w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=list(columns), extrasaction='raise')
        w.writeheader()
        for r in rows:
            w.writerow({k: (f'{v:.6g}' if isinstance(v, float) else v) for k, v in r.items()})


def read_csv(path: Path, columns: Sequence[str]) -> List[Dict[str, str]]:
    """Read a CSV written by ``write_csv``; raise ValueError naming the file on missing columns."""
    path = Path(path)
    with path.open(newline='') as f:
        reader = csv.DictReader(f)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f'{path}: missing columns {missing}')
        return list(reader)


def _metadata(host: HostInfo, timing: Timing, extra: Dict[str, Any]) -> Dict[str, Any]:
    cpu = ''
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                cpu = line.split(':', 1)[1].strip()
                break
    except OSError:
        pass
    meta = {'host': host.__dict__, 'timing': timing.__dict__, 'torch': torch.__version__,
            'python': platform.python_version(), 'machine': platform.machine(), 'cpu': cpu,
            'cpu_count': os.cpu_count(), 'batch_size': 1,
            'date': time.strftime('%Y-%m-%dT%H:%M:%S%z')}
    meta.update(extra)
    return meta


def meta_path(csv_path: Path) -> Path:
    """Return the metadata JSON written next to a CSV: ``profile_robot.csv`` -> ``.meta.json``."""
    csv_path = Path(csv_path)
    return csv_path.with_name(csv_path.stem + '.meta.json')


def run_profile(args: Any, host: HostInfo, timing: Timing) -> Dict[str, Any]:
    t0 = time.monotonic()
    configs = profile_configs(args.quick, seed=args.seed)
    rows = profile_layers(configs, host, timing, progress=not args.no_progress, seed=args.seed)
    out = Path(args.out or f'bench/results/profile_{host.host}.csv')
    write_csv(rows, out, PROFILE_COLUMNS)
    elapsed = time.monotonic() - t0
    summary: Dict[str, Any] = {'host': host.host, 'emulation': host.emulation,
                               'time_factor': host.time_factor, 'threads': host.threads,
                               'profile_csv': str(out), 'layers': len(rows),
                               'profile_s': round(elapsed, 1)}
    meta_path(out).write_text(json.dumps(_metadata(host, timing, {
        'quick': args.quick, 'seed': args.seed, 'rows': len(rows), 'elapsed_s': elapsed,
        'cgroup': args.cgroup if host.emulation == 'cgroup' else None}), indent=1) + '\n')
    if args.no_branches:
        return summary
    weights = args.weights or ARTIFACT_DIR / WEIGHTS_FILE
    if args.weights or Path(weights).is_file():
        model = load_model(Path(weights))
        weights_note = str(weights)
    else:   # dense float kernels take the same time whatever the weight values
        model = MultiExitAlexNet(SHIPPED_CONFIG).eval()
        weights_note = 'random init (no weights file)'
    parts = [p.strip() for p in args.branch_parts.split(',') if p.strip()]
    t0 = time.monotonic()
    brows = measure_branches(model, host, timing, parts, progress=not args.no_progress)
    bout = Path(args.branches_out or f'bench/results/branches_{host.host}.csv')
    write_csv(brows, bout, BRANCH_COLUMNS)
    elapsed = time.monotonic() - t0
    meta_path(bout).write_text(json.dumps(_metadata(host, timing, {
        'model_id': model.model_id, 'weights': weights_note, 'parts': parts,
        'rows': len(brows), 'elapsed_s': elapsed}), indent=1) + '\n')
    summary.update({'branches_csv': str(bout), 'branch_parts': len(brows),
                    'branches_s': round(elapsed, 1), 'model_id': model.model_id})
    return summary
