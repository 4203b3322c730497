"""
Per-kind latency regressions vs direct per-block measurement on ResNet-18, MobileNetV2, ResNet-64.

Issue 16 item 3. For each model (``examples/models/resnet18.py`` and ``mobilenet_v2.py`` at
3x224x224, ``edgent_ros.models.resnet_cifar:resnet_cifar64`` at 3x64x64; random weights,
``torch.manual_seed(0)`` as ``core.described`` does) and, with ``--fold``, the same model with
every conv+BN pair folded into one conv (``torch.nn.utils.fusion.fuse_conv_bn_eval``; the BN
becomes an ``nn.Identity``), the script cuts the model into blocks (``core.chain.cut_chain``,
block granularity, as ``edgent-ros import`` does) and on this host (the edge, ``--threads``
torch threads):

1. measures every block once, directly (``offline.model_tools.profile_blocks``, 15 calls per
   block: what ``edgent-ros profile --model`` runs): ``measured_repeat_ms``;
2. times ~700 single ops of 30 kinds (``offline.kind_profile``, ``--rounds`` passes over all of
   them) and, after each pass, every block again; the median over those passes is the reference
   ``measured_ms`` (so op and block timings see the same load on the host);
3. fits one regression per kind (``core.kind_latency``; ``--profile-csv`` refits saved op
   timings instead of timing again) and predicts every block as the sum of its ops plus the
   measured per-op and per-block overhead of running them in a ``torch.fx`` block. A block with
   an op kind no regression covers takes its step-1 measured time instead
   (``KindLatency.block_ms``): ``unseen`` names the kinds, ``source`` is ``measured``
   (``--hold-out-kind K`` removes a kind's regression to show that path).

Printed per model: MAPE over its blocks of the regression prediction against the reference, and
of the step-1 measurement against it (the direct measurement's repeatability: what a block time
measured once is worth later), the same for the whole trunk (sum of blocks), and the median
predicted/measured ratio. Run from the repository root (2 cores shared with other work: wrap it
in ``flock /tmp/edgent_test.lock``)::

    source scripts/env.sh && export PYTHONPATH=$PWD:$PYTHONPATH
    python bench/kind_latency.py --fold                    # ~1.5 min
    python bench/kind_latency.py --fold --profile-csv bench/results/kind_profile_edge.csv
    python bench/kind_latency.py --fold --hold-out-kind relu6

Writes ``bench/results/kind_latency.csv`` (model, block, measured_ms, predicted_ms, unseen,
source, measured_repeat_ms, ...), ``kind_latency.png`` (predicted vs measured per model,
log-log), ``kind_profile_edge.csv`` (the op timings) and ``kind_latency_edge.json`` (the fitted
regressions, ``core.kind_latency`` format).
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path
import statistics
import sys
import time
from types import SimpleNamespace
from typing import Any, Dict, List, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import fx, nn  # noqa: E402
from torch.nn.utils.fusion import fuse_conv_bn_eval  # noqa: E402

from edgent_ros.core.chain import cut_chain, MultiExitChain  # noqa: E402
from edgent_ros.core.described import load_factory  # noqa: E402
from edgent_ros.core.kind_latency import KindLatency  # noqa: E402
from edgent_ros.core.latency import mape_pct  # noqa: E402
from edgent_ros.offline import kind_profile as kp  # noqa: E402
from edgent_ros.offline.hosts import DEFAULT_REPEATS  # noqa: E402
from edgent_ros.offline.model_tools import profile_blocks  # noqa: E402
from edgent_ros.offline.profiling import HostInfo, Timing  # noqa: E402

RESULTS = ROOT / 'bench' / 'results'
MODELS = (('resnet18', 'resnet18.py:resnet18', (3, 224, 224)),
          ('mobilenet_v2', 'mobilenet_v2.py:mobilenet_v2', (3, 224, 224)),
          ('resnet_cifar64', 'edgent_ros.models.resnet_cifar:resnet_cifar64', (3, 64, 64)))
CSV_COLUMNS = ('model', 'block', 'measured_ms', 'predicted_ms', 'unseen', 'source',
               'measured_repeat_ms', 'regression_ms', 'n_ops', 'kinds', 'mflops')


def log(s: str) -> None:
    """Print a progress line to stderr."""
    print(s, file=sys.stderr, flush=True)


def fold_bn(module: nn.Module) -> int:
    """Fold every BatchNorm2d that directly follows a Conv2d (its only user) into the conv."""
    gm = fx.symbolic_trace(module)
    n = 0
    for node in gm.graph.nodes:
        if node.op != 'call_module' or not isinstance(module.get_submodule(node.target),
                                                      nn.BatchNorm2d):
            continue
        src = node.args[0]
        if not (isinstance(src, fx.Node) and src.op == 'call_module' and len(src.users) == 1
                and isinstance(module.get_submodule(src.target), nn.Conv2d)):
            continue
        fused = fuse_conv_bn_eval(module.get_submodule(src.target),
                                  module.get_submodule(node.target))
        for target, new in ((src.target, fused), (node.target, nn.Identity())):
            parent, _, leaf = str(target).rpartition('.')
            setattr(module.get_submodule(parent) if parent else module, leaf, new)
        n += 1
    return n


def with_call(ops: List[Dict[str, Any]], block: fx.GraphModule) -> List[Dict[str, Any]]:
    """Add ``detail['call']`` (the fx node's op) to a block's op dicts (core.chain does not)."""
    calls = {n.name: n.op for n in block.graph.nodes}
    out = []
    for op in ops:
        d = dict(op, detail=dict(op.get('detail') or {}))
        if op['name'] in calls:
            d['detail']['call'] = calls[op['name']]
        out.append(d)
    return out


def build(factory: str, shape: Tuple[int, ...], fold: bool) -> SimpleNamespace:
    """Return the model cut into blocks, in the shape ``profile_blocks`` reads."""
    fn = load_factory(factory, ROOT / 'examples' / 'models')
    torch.manual_seed(0)
    module = fn().eval()
    folded = fold_bn(module) if fold else 0
    chain = cut_chain(module, shape)
    return SimpleNamespace(chain=chain, model=MultiExitChain(chain, [], []), input_shape=shape,
                           folded=folded)


def measure(models: Dict[str, SimpleNamespace], host: HostInfo, timing: Timing,
            label: str) -> Dict[str, List[float]]:
    """Directly measure every block of every model once (``profile_blocks``), median ms."""
    out = {}
    for name, dm in models.items():
        t0 = time.perf_counter()
        out[name] = profile_blocks(dm, host, timing, log=lambda s: None)['trunk_ms']
        log(f'{label}: {name}: {len(out[name])} blocks, trunk {sum(out[name]):.2f} ms '
            f'({time.perf_counter() - t0:.1f} s)')
    return out


def plot(rows: List[Dict[str, Any]], summary: Dict[str, Dict[str, Any]], path: Path) -> None:
    """Save predicted vs measured block times per model, log-log (PNG)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    names = list(summary)
    cols = min(3, len(names))
    nrows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(4.6 * cols, 4.3 * nrows), dpi=110)
    FigureCanvasAgg(fig)
    for i, name in enumerate(names):
        ax = fig.add_subplot(nrows, cols, i + 1)
        mine = [r for r in rows if r['model'] == name]
        meas = [r['measured_ms'] for r in mine]
        s = summary[name]
        ax.scatter(meas, [r['measured_repeat_ms'] for r in mine], s=14, marker='x',
                   color='tab:gray', label=f'measured again (MAPE {s["repeat_mape"]:.1f} %)')
        reg = [r for r in mine if r['source'] == 'regression']
        ax.scatter([r['measured_ms'] for r in reg], [r['predicted_ms'] for r in reg], s=18,
                   color='tab:blue', label=f'per-kind regression (MAPE {s["reg_mape"]:.1f} %)')
        fb = [r for r in mine if r['source'] != 'regression']
        if fb:
            ax.scatter([r['measured_ms'] for r in fb], [r['predicted_ms'] for r in fb], s=30,
                       facecolors='none', edgecolors='tab:red',
                       label=f'unseen kind: measured ({len(fb)})')
        vals = meas + [r['predicted_ms'] for r in mine] + [r['measured_repeat_ms'] for r in mine]
        lo, hi = min(vals) / 1.5, max(vals) * 1.5
        ax.plot([lo, hi], [lo, hi], 'k--', lw=0.8)
        ax.set_xscale('log')
        ax.set_yscale('log')
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_title(f'{name}: {len(mine)} blocks', fontsize=10)
        ax.set_xlabel('measured block time (ms, reference)')
        ax.set_ylabel('predicted (ms)')
        ax.grid(True, which='both', alpha=0.3)
        ax.legend(loc='upper left', fontsize=7)
    fig.suptitle(f'Block time: sum of per-kind op regressions vs direct measurement '
                 f'({rows[0]["threads"]} thread(s))', fontsize=10)
    fig.tight_layout()
    fig.savefig(str(path))


def main(argv: List[str] = None) -> int:
    """Run the comparison; print the MAPE table."""
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--threads', type=int, default=1, help='torch threads (default 1: the '
                    'edge shares 2 cores with other work)')
    ap.add_argument('--repeats', type=int, default=DEFAULT_REPEATS['edge'],
                    help='timed calls per block and pass (default %(default)s, as edgent-ros '
                         'profile)')
    ap.add_argument('--op-repeats', type=int, default=7, help='timed calls per op and round '
                    '(default %(default)s)')
    ap.add_argument('--rounds', type=int, default=kp.DEFAULT_ROUNDS,
                    help='rounds over all ops, each followed by a reference pass over the '
                         'blocks (default %(default)s)')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--quick', action='store_true', help='4 ops per kind (smoke run)')
    ap.add_argument('--fold', action='store_true', help='also each model with BN folded')
    ap.add_argument('--models', default=','.join(m[0] for m in MODELS))
    ap.add_argument('--profile-csv', type=Path, default=None,
                    help='fit on these op timings instead of timing the ops again')
    ap.add_argument('--hold-out-kind', action='append', default=[], metavar='KEY',
                    help='drop this regression (its blocks fall back to measurement)')
    ap.add_argument('--results', type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    host = HostInfo('edge', 'none', args.threads)
    block_timing, op_timing = Timing(args.repeats, 3), Timing(args.op_repeats, 3)
    results = args.results
    results.mkdir(parents=True, exist_ok=True)

    wanted = args.models.split(',')
    models: Dict[str, SimpleNamespace] = {}
    for name, factory, shape in MODELS:
        if name not in wanted:
            continue
        for fold in ((False, True) if args.fold else (False,)):
            key = name + ('+bnfold' if fold else '')
            models[key] = build(factory, shape, fold)
            log(f'built {key}: {len(models[key].chain)} blocks'
                + (f', {models[key].folded} BN folded' if fold else ''))

    pass1 = measure(models, host, block_timing, 'pass 1')
    ref_runs: Dict[str, List[List[float]]] = {name: [] for name in models}

    def reference_round(r: int) -> None:
        for name, rr in measure(models, host, block_timing, f'reference {r + 1}').items():
            ref_runs[name].append(rr)
    if args.profile_csv:
        rows = kp.read_rows(args.profile_csv)
        log(f'op timings from {args.profile_csv}: {len(rows)} rows')
        for r in range(args.rounds):
            reference_round(r)
    else:
        configs = kp.grid_configs(args.seed, quick=args.quick)
        log(f'timing {len(configs)} single ops of {len({c.key for c in configs})} kinds, '
            f'{args.rounds} rounds, each followed by a reference pass over the blocks')
        rows = kp.profile_kinds(configs, host, op_timing, seed=args.seed, rounds=args.rounds,
                                log=log, after_round=reference_round)
        kp.write_rows(rows, results / 'kind_profile_edge.csv')
    pass2 = {name: [statistics.median(v) for v in zip(*rr)] for name, rr in ref_runs.items()}
    overheads = kp.dispatch_overhead_ms(Timing(101, 10))
    info = dict(host.columns(), repeats=op_timing.repeats, rounds=args.rounds,
                torch=torch.__version__, ops=len(rows), seed=args.seed, quick=args.quick)
    klat = kp.fit_rows(rows, 'edge', overheads, info, args.seed)
    klat.save(results / 'kind_latency_edge.json')
    klat = KindLatency.load(results / 'kind_latency_edge.json', 'edge')   # round trip
    for k in args.hold_out_kind:
        if klat.regressions.pop(k, None) is None:
            log(f'--hold-out-kind {k}: no such regression')

    out_rows: List[Dict[str, Any]] = []
    summary: Dict[str, Dict[str, Any]] = {}
    for name, dm in models.items():
        for i, ops in enumerate(dm.chain.ops):
            op_dicts = with_call([o.to_dict() for o in ops], dm.chain.blocks[i])
            est = klat.block_ms(op_dicts, measured_ms=pass1[name][i])
            cut = dm.chain.cuts[i + 1]
            out_rows.append({
                'model': name, 'block': f'{i + 1}:{cut.module or cut.name}',
                'measured_ms': pass2[name][i], 'predicted_ms': est.ms,
                'unseen': ';'.join(est.unseen), 'source': est.source,
                'measured_repeat_ms': pass1[name][i], 'regression_ms': est.regression_ms,
                'n_ops': len(ops), 'kinds': ';'.join(sorted({o.kind for o in ops})),
                'mflops': round(sum(o.flops for o in ops) / 1e6, 3), 'threads': args.threads})
        mine = [r for r in out_rows if r['model'] == name]
        meas = [r['measured_ms'] for r in mine]
        pred = [r['predicted_ms'] for r in mine]
        rep = [r['measured_repeat_ms'] for r in mine]
        summary[name] = {
            'blocks': len(mine), 'fallback': sum(r['source'] != 'regression' for r in mine),
            'reg_mape': mape_pct(pred, meas), 'repeat_mape': mape_pct(rep, meas),
            'reg_total': 100 * abs(sum(pred) - sum(meas)) / sum(meas),
            'repeat_total': 100 * abs(sum(rep) - sum(meas)) / sum(meas),
            'median_ratio': statistics.median(p / m for p, m in zip(pred, meas)),
            'trunk_ms': sum(meas)}
    with open(results / 'kind_latency.csv', 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction='ignore')
        w.writeheader()
        for r in out_rows:
            w.writerow({k: (f'{v:.5f}' if isinstance(v, float) else v) for k, v in r.items()})
    plot(out_rows, summary, results / 'kind_latency.png')

    print(f'\nper-kind regressions ({len(klat.regressions)}; cross-validated MAPE of single '
          f'ops, %; overhead per block {klat.block_overhead_ms * 1e3:.1f} us, per op '
          f'{klat.op_overhead_ms * 1e3:.1f} us):')
    print('  ' + ', '.join(f'{k} {r.stats["cv_mape_pct"]:.0f}'
                           for k, r in sorted(klat.regressions.items())
                           if r.stats.get('cv_mape_pct') is not None))
    print(f'\n{"model":<24} {"blocks":>6} {"trunk ms":>9} {"regr MAPE":>10} {"meas-again":>11}'
          f' {"regr trunk":>11} {"meas trunk":>11} {"pred/meas":>9} {"fallback":>8}')
    for name, s in summary.items():
        print(f'{name:<24} {s["blocks"]:>6} {s["trunk_ms"]:>9.2f} {s["reg_mape"]:>9.1f}%'
              f' {s["repeat_mape"]:>10.1f}% {s["reg_total"]:>10.1f}% {s["repeat_total"]:>10.1f}%'
              f' {s["median_ratio"]:>9.2f} {s["fallback"]:>8}')
    print(f'\n(block MAPE over the model\'s blocks; trunk: |error| of the sum of all blocks; '
          f'reference: median of {args.rounds} block passes; {args.threads} thread(s); '
          f'{time.perf_counter() - t_start:.0f} s)')
    print(f'wrote {results / "kind_latency.csv"}, {results / "kind_latency.png"}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
