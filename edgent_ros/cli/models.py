"""
``edgent-ros`` subcommands for a model of your own: ``import``, ``train-exits``, ``profile-kinds``.

The ``--model`` paths of ``layers``, ``profile`` and ``plan`` call the helpers here.

``plan --model`` reads only JSON (the table, block times and accuracy written beside the
description) and loads no torch.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys
from typing import Any, Dict

from ..core.artifacts import ArtifactError
from ..core.datasets import load_split
from ..core.model_desc import load_description
from ..core.model_plan import load_block_latency, load_model_accuracy, load_table, problem_for
from ..core.optimizer import decide_policy
from ..core.paths import artifacts_out, results_out
from ..offline.hosts import DEFAULT_CPU_QUOTA, DEFAULT_WARMUP


def _log(s: str) -> None:
    print(s, file=sys.stderr, flush=True)


def cmd_import(args: argparse.Namespace) -> int:
    """Describe (for ``--factory``), cut, verify and tabulate a model."""
    from ..offline.model_tools import describe_factory, import_model
    path = Path(args.description)
    if args.factory:
        shape = [int(v) for v in args.input.split(',')]
        classes: Any = int(args.classes) if args.classes.isdigit() else args.classes.split(',')
        describe_factory(args.factory, args.name or path.stem.split('.')[0], shape, classes,
                         path, args.weights, granularity=args.granularity,
                         block_depth=args.block_depth, exits=args.exits or ())
        _log(f'wrote {path}')
    summary = import_model(path, args.table, log=_log)
    print(json.dumps(summary))
    return 0


def model_files(args: argparse.Namespace) -> Dict[str, Path]:
    """Return the table / latency / accuracy files of ``--model`` (options win)."""
    return load_description(args.model).files(getattr(args, 'table', None),
                                              getattr(args, 'model_latency', None),
                                              getattr(args, 'model_accuracy', None))


def model_problem(args: argparse.Namespace):
    """Table, problem and accuracy source of ``--model`` for ``plan``."""
    files = model_files(args)
    if not files['table'].is_file():
        raise ArtifactError(f'{files["table"]}: no layer table: run edgent-ros import '
                            f'{args.model} first')
    table = load_table(files['table'])
    mid = table['model_id']
    latency = load_block_latency(files['latency'], mid)
    if args.assume_accuracy:
        vals = [float(v) for v in args.assume_accuracy.split(',')]
        accuracy = {k + 1: v for k, v in enumerate(vals)}
        source = 'assumed (--assume-accuracy)'
    else:
        accuracy = load_model_accuracy(files['accuracy'], mid)
        source = str(files['accuracy'])
    problem = problem_for(table, latency, accuracy, overhead_ms=args.overhead_ms,
                          bytes_per_element=args.bytes_per_element,
                          robot_time_scale=args.robot_time_scale or 1.0)
    return table, problem, source


def cmd_plan_model(args: argparse.Namespace) -> int:
    """``plan --model``: the decision for a described model."""
    table, problem, source = model_problem(args)
    d = decide_policy(problem, args.policy, args.bandwidth_mbps * 1e6, args.deadline_ms)
    n = problem.branch_len(d.exit_index)
    layers = next(x for x in table['exits'] if x['exit'] == d.exit_index)['layers']
    after = layers[d.split_index - 1]['name'] if 0 < d.split_index <= n else ''
    out = d.to_dict()
    out.update(model_id=table['model_id'], policy=args.policy, branch_layers=n,
               cut_after=after, accuracy_source=source,
               payload_bytes=problem.split_bytes[d.exit_index][d.split_index])
    if args.json:
        print(json.dumps({k: (v if not isinstance(v, float) or v == v and abs(v) != float('inf')
                              else str(v)) for k, v in out.items()}, indent=1))
        return 0
    where = ('device-only' if d.split_index == n else 'edge-only (the frame is sent)'
             if d.split_index == 0 else f'blocks [0, {d.split_index}) on the robot (cut after '
             f'{after}), the rest on the edge')
    print(f'{table["model_id"]}: {args.policy} at {args.bandwidth_mbps:g} Mbit/s, deadline '
          f'{args.deadline_ms:g} ms:')
    print(f'  exit {d.exit_index}, split {d.split_index}: {where}; sends '
          f'{out["payload_bytes"]} B')
    print(f'  top-1 {100 * d.accuracy:.1f} % ({source})')
    print(f'  predicted latency {d.total_ms:.2f} ms = device {d.device_ms:.2f} + transfer '
          f'{d.transfer_ms:.2f} + edge {d.edge_ms:.2f}')
    print(f'  {"meets" if d.feasible else "MISSES"} the deadline'
          + (f': {d.reason}' if d.reason else ''))
    return 0


def cmd_layers_model(args: argparse.Namespace) -> int:
    """``layers --model``: the cut points of a described model (builds it: torch)."""
    from ..core.described import load_described
    from ..offline.model_tools import cut_report
    dm = load_described(args.model)
    if args.json:
        print(json.dumps(dm.table(), indent=1))
    else:
        print(cut_report(dm))
        for note in dm.notes:
            print(f'note: {note}')
    return 0


def add_model_plan_args(s: argparse.ArgumentParser) -> None:
    """Options of ``plan`` for ``--model``."""
    s.add_argument('--model', type=Path, default=None,
                   help='a model description (YAML/JSON): plan that model from the table, '
                        'block times and accuracy beside it')
    s.add_argument('--assume-accuracy', default=None, metavar='A1,A2,...',
                   help='with --model: top-1 per exit when none was measured (random '
                        'weights): the decision is then about these numbers')
    s.add_argument('--bytes-per-element', type=float, default=4.0,
                   help='with --model: wire bytes per activation element (4 fp32, 1 int8)')


def cmd_train_exits(args: argparse.Namespace) -> int:
    """Train side heads on the frozen backbone of ``description``."""
    from ..offline.exit_training import ExitTrainConfig, load_image_folder, train_exits
    desc = load_description(args.description)
    if args.image_folder:
        size = desc.input_shape[1:]
        x_train, y_train = load_image_folder(args.image_folder, desc.classes, size)
        x_test, y_test = load_image_folder(args.test_folder or args.image_folder, desc.classes,
                                           size)
        dataset = f'image folder {args.image_folder}'
    else:
        x_train, y_train = load_split('train', args.data_dir)
        x_test, y_test = load_split('test', args.data_dir)
        dataset = f'CIFAR-10 32x32 resized to {desc.input_shape[1]}x{desc.input_shape[2]}'
    if args.test_limit:
        step = max(1, len(x_test) // args.test_limit)
        x_test, y_test = x_test[::step][:args.test_limit], y_test[::step][:args.test_limit]
    cfg = ExitTrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                          threads=args.threads, seed=args.seed, train_limit=args.train_limit,
                          max_minutes=args.max_minutes)
    print(json.dumps(train_exits(Path(args.description), x_train, y_train, x_test, y_test, cfg,
                                 dataset, log=_log)))
    return 0


def add_parsers(sub: Any) -> None:
    """Register ``import`` and ``train-exits`` on the ``edgent-ros`` subparsers."""
    s = sub.add_parser(
        'train-exits', help='train side-exit heads at cut points of a frozen backbone',
        description='Freeze the backbone of a described model and train one head per exit of '
                    'its description (at the named cut points) on CIFAR-10 resized to the '
                    'model input, or on an image folder (one sub-folder per class). Writes '
                    '<name>.exits.safetensors, <name>.accuracy.json (top-1 per exit) and the '
                    'table again (the model id now includes the heads).')
    s.add_argument('description', help='model description with exits: [{cut: ...}, ...]')
    s.add_argument('--data-dir', type=Path, default=None, help='CIFAR-10 folder (default: '
                   'the usual data search, see edgent-ros --help)')
    s.add_argument('--image-folder', type=Path, default=None,
                   help='train on <folder>/<class>/* images instead of CIFAR-10')
    s.add_argument('--test-folder', type=Path, default=None,
                   help='with --image-folder: test images (default: the training folder)')
    s.add_argument('--epochs', type=int, default=2, help='epochs (default %(default)s)')
    s.add_argument('--batch-size', type=int, default=128, help='(default %(default)s)')
    s.add_argument('--lr', type=float, default=0.05, help='peak learning rate (default '
                   '%(default)s)')
    s.add_argument('--threads', type=int, default=2, help='torch threads (default %(default)s)')
    s.add_argument('--seed', type=int, default=0, help='(default %(default)s)')
    s.add_argument('--train-limit', type=int, default=None, help='use only N training images')
    s.add_argument('--test-limit', type=int, default=None, help='evaluate on N test images')
    s.add_argument('--max-minutes', type=float, default=0.0,
                   help='stop training after this many minutes (0: no cap)')
    s.set_defaults(func=cmd_train_exits)

    s = sub.add_parser(
        'import', help='cut a PyTorch classifier into blocks where one tensor crosses, check '
                       'every cut and write its layer table',
        description='Read a model description (or write one first with --factory), trace the '
                    'model with torch.fx, cut it where exactly one tensor crosses, check that '
                    'every split of every exit equals the unsplit forward and write '
                    '<name>.table.json beside the description. A model that cannot be cut is '
                    'refused with the place and the reason.')
    s.add_argument('description', help='model description file (.yaml or .json)')
    s.add_argument('--factory', default=None,
                   help='write the description first: package.module:function or '
                        'path/to/file.py:function returning the torch.nn.Module')
    s.add_argument('--name', default=None, help='with --factory: model name (default: file '
                   'stem)')
    s.add_argument('--input', default='3,224,224', help='with --factory: C,H,W (default '
                   '%(default)s)')
    s.add_argument('--classes', default='1000', help='with --factory: a count or a comma list '
                   'of names (default %(default)s)')
    s.add_argument('--weights', type=Path, default=None,
                   help='with --factory: state-dict safetensors (default: random weights)')
    s.add_argument('--granularity', choices=('block', 'layer'), default='block',
                   help='with --factory: cut at module boundaries (block) or at every point '
                        'where one tensor crosses (layer)')
    s.add_argument('--block-depth', type=int, default=2, help='with --factory: module depth '
                   'of a block (default %(default)s)')
    s.add_argument('--exits', nargs='*', default=None, metavar='CUT',
                   help='with --factory: cut points to put side exits at (train them with '
                        'train-exits)')
    s.add_argument('--table', type=Path, default=None,
                   help='table JSON to write (default <name>.table.json beside the description)')
    s.set_defaults(func=cmd_import)

    s = sub.add_parser(
        'profile-kinds', help='time single ops of ~30 kinds and fit a latency regression per '
                              'kind (any cut model)',
        description='Time ~700 single ops of the kinds modern backbones use (conv, grouped and '
                    'depthwise conv, batch norm, ReLU/ReLU6/Hardswish/SiLU/GELU..., add, '
                    'concat, pooling, flatten, linear, dropout) at batch 1 and fit one linear '
                    'regression per kind, as Edgent does for its layers; a block of any cut '
                    'model is predicted as the sum of its ops (core.kind_latency). The robot '
                    'runs on one thread and its times are multiplied by the slowdown factor. '
                    'Merges the host into the JSON file (default <user dir>/artifacts/'
                    'kind_latency.json).')
    s.add_argument('--host', choices=('edge', 'robot'), default='edge',
                   help='which side (default %(default)s)')
    s.add_argument('--out', type=Path, default=None, help='regressions JSON to merge into')
    s.add_argument('--csv', type=Path, default=None,
                   help='op timings CSV (default <user dir>/results/kind_profile_<host>.csv)')
    s.add_argument('--threads', type=int, default=None,
                   help="edge: torch threads (default torch's default); the robot uses 1")
    s.add_argument('--slowdown-factor', type=float, default=1.0 / DEFAULT_CPU_QUOTA,
                   help='robot: multiply its times by this (default %(default)s)')
    s.add_argument('--repeats', type=int, default=7, help='timed calls per op and round '
                   '(default %(default)s)')
    s.add_argument('--rounds', type=int, default=5, help='passes over all ops (default '
                   '%(default)s)')
    s.add_argument('--quick', action='store_true', help='4 ops per kind (smoke test)')
    s.add_argument('--seed', type=int, default=0, help='op sample and order (default '
                   '%(default)s)')
    s.set_defaults(func=cmd_profile_kinds)


def cmd_profile_kinds(args: argparse.Namespace) -> int:
    """``profile-kinds``: time single ops on this host and fit the per-kind regressions."""
    import torch
    from ..offline.kind_profile import run_profile_kinds
    from ..offline.profiling import HostInfo, Timing
    if args.threads is not None and args.threads < 1:
        raise ValueError(f'--threads must be >= 1, got {args.threads}')
    if not args.slowdown_factor > 0:
        raise ValueError(f'--slowdown-factor must be > 0, got {args.slowdown_factor}')
    old = torch.get_num_threads()
    threads = 1 if args.host == 'robot' else (args.threads or old)
    host = HostInfo('edge', 'none', threads) if args.host == 'edge' else \
        HostInfo('robot', 'thread+factor', 1, DEFAULT_CPU_QUOTA, None, args.slowdown_factor)
    torch.set_num_threads(threads)
    try:
        summary = run_profile_kinds(args.out or artifacts_out('kind_latency.json'), host,
                                    Timing(args.repeats, DEFAULT_WARMUP),
                                    args.csv or results_out(f'kind_profile_{args.host}.csv'),
                                    quick=args.quick, seed=args.seed, rounds=args.rounds,
                                    log=_log)
    finally:
        torch.set_num_threads(old)
    print(json.dumps(summary))
    return 0
