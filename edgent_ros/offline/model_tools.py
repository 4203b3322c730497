"""
Bring your own model: import (describe, cut, verify, table) and profile its blocks per host.

``describe_factory`` writes a model description for a ``module:function`` / ``file.py:function``
factory; ``import_model`` builds a description's model, checks that every split of every exit
equals the unsplit forward (``core.described.verify_cuts``) and writes its layer table;
``profile_blocks`` times every trunk block and side head at batch 1 on this host (inside the
robot's CPU emulation for ``--host robot``) and merges them into the model's block-latency file.
No rclpy here.
"""

from __future__ import annotations

from pathlib import Path
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch

from ..core.artifacts import save_json
from ..core.described import DescribedModel, load_described, verify_cuts
from ..core.model_desc import ModelDescription, parse_description, write_description
from ..core.model_plan import save_block_latency, TABLE_FORMAT
from .profiling import HostInfo, time_call, Timing


def describe_factory(factory: str, name: str, input_shape: Sequence[int], classes: Any,
                     out: Path, weights: Optional[Path] = None,
                     mean: Sequence[float] = (0.485, 0.456, 0.406),
                     std: Sequence[float] = (0.229, 0.224, 0.225),
                     granularity: str = 'block', block_depth: int = 2,
                     exits: Sequence[str] = (), head: str = 'pool_fc') -> ModelDescription:
    """Write a description for a factory (defaults: ImageNet normalisation) and return it."""
    inp = {'shape': list(input_shape), 'mean': list(mean), 'std': list(std)}
    body = {'name': name, 'factory': factory, 'input': inp,
            'classes': classes, 'granularity': granularity, 'block_depth': block_depth,
            'exits': [{'cut': c, 'head': head} for c in exits]}
    out = Path(out)
    if weights is not None:
        body['weights'] = str(Path(weights).resolve())
    if exits:
        body['exit_weights'] = f'{name}.exits.safetensors'
    desc = parse_description(body, out)
    write_description(desc, out)
    return desc


def import_model(path: Path, table_out: Optional[Path] = None, frames: int = 2,
                 log: Callable[[str], None] = print) -> Dict[str, Any]:
    """Build, verify every cut and write the layer table of the model described at ``path``."""
    t0 = time.perf_counter()
    dm = load_described(path)
    for note in dm.notes:
        log(f'note: {note}')
    worst = verify_cuts(dm, frames)
    table = dm.table()
    out = Path(table_out) if table_out else dm.desc.derived('.table.json')
    save_json({k: v for k, v in table.items() if k != 'format'}, out, TABLE_FORMAT)
    log(cut_report(dm))
    return {'model_id': dm.model_id, 'exits': dm.num_exits,
            'cuts': len(dm.chain.cuts) - 2 if dm.chain else None,
            'max_split_error': worst, 'table': str(out),
            'seconds': round(time.perf_counter() - t0, 2), 'notes': dm.notes}


def cut_report(dm: DescribedModel) -> str:
    """Return a human-readable table of the cut points (trunk) of a described model."""
    lines = [f'model {dm.model_id}: input {"x".join(map(str, dm.input_shape))}, '
             f'{dm.num_exits} exits']
    table = dm.table()
    last = table['exits'][-1]['layers']
    lines.append(f'  {"split":>5} {"after":<24} {"ops":<28} {"tensor":<14} {"KB fp32":>9} '
                 f'{"MFLOPs":>8}')
    lines.append(f'  {0:>5} {"(input frame)":<24} {"":<28} '
                 f'{"x".join(map(str, dm.input_shape)):<14} {table["frame_bytes"] / 1024:>9.1f}'
                 f' {"":>8}   uint8')
    for i, r in enumerate(last, start=1):
        kinds = ','.join(sorted(set(r['kinds'])))[:28]
        lines.append(f'  {i:>5} {r["name"][:24]:<24} {kinds:<28} '
                     f'{"x".join(map(str, r["out_shape"])):<14} {r["out_bytes"] / 1024:>9.1f} '
                     f'{r["flops"] / 1e6:>8.2f}')
    for x in table['exits'][:-1]:
        lines.append(f'  exit {x["exit"]}: head after split {x["attach"]} '
                     f'({last[x["attach"] - 1]["name"]})')
    return '\n'.join(lines)


def _cut_inputs(dm: DescribedModel, seed: int = 0) -> List[torch.Tensor]:
    """One real batch-1 tensor at every trunk cut (the input, then each block's output)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((1,) + tuple(dm.input_shape), generator=g)
    xs = [x]
    with torch.no_grad():
        for b in dm.model.blocks:
            x = b(x)
            xs.append(x)
    return xs


def profile_blocks(dm: DescribedModel, host: HostInfo, timing: Timing, window_s: float = 0.0,
                   log: Callable[[str], None] = print) -> Dict[str, List[float]]:
    """Median ms of each trunk block and each side head at batch 1 (times x the host factor)."""
    if dm.chain is None:
        raise ValueError('the shipped AlexNet is profiled per layer kind: edgent-ros profile '
                         'without --model')
    xs = _cut_inputs(dm)
    trunk, heads = [], []
    n = len(dm.model.blocks) + len(dm.model.heads)
    t0 = time.perf_counter()
    with torch.no_grad():
        items = [(f'block {i + 1}', b, xs[i]) for i, b in enumerate(dm.model.blocks)]
        items += [(f'exit {k + 1} head', h, xs[a])
                  for k, (a, h) in enumerate(zip(dm.model.attach, dm.model.heads))]
        for j, (label, mod, x) in enumerate(items, start=1):
            stats = time_call(lambda m=mod, x=x: m(x), timing, window_s, host.time_factor)
            (trunk if label.startswith('block') else heads).append(stats['median_ms'])
            elapsed = time.perf_counter() - t0
            log(f'[{j}/{n}] {label}: {stats["median_ms"]:.3f} ms  '
                f'(elapsed {elapsed:.0f} s, ETA {elapsed / j * (n - j):.0f} s)')
    return {'trunk_ms': trunk, 'heads_ms': heads}


def run_profile_model(path: Path, host: HostInfo, timing: Timing, out: Optional[Path] = None,
                      window_s: float = 0.0, log: Callable[[str], None] = print
                      ) -> Dict[str, Any]:
    """Profile the blocks of the model described at ``path`` and merge them into its file."""
    dm = load_described(path)
    times = profile_blocks(dm, host, timing, window_s, log)
    out = Path(out) if out else dm.desc.derived('.latency.json')
    info = dict(host.columns())
    info.update(repeats=timing.repeats, warmup=timing.warmup, window_s=window_s,
                torch=torch.__version__)
    save_block_latency(out, dm.model_id, host.host, times['trunk_ms'], times['heads_ms'], info)
    total = sum(times['trunk_ms'])
    print(f'{host.host}: trunk {total:.2f} ms over {len(times["trunk_ms"])} blocks -> {out}',
          file=sys.stderr)
    return {'model_id': dm.model_id, 'host': host.host, 'trunk_ms_total': round(total, 3),
            'blocks': len(times['trunk_ms']), 'heads': len(times['heads_ms']), 'out': str(out)}
