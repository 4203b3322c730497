"""
``edgent-ros``: the command line of the offline phase and the tools around the nodes.

Subcommands that need ROS 2 (``demo``, ``record``, ...) import rclpy lazily, so the offline phase
(``layers``, ``train``, ``profile``, ``fit``, ``plan``, ``info``) runs on a machine without ROS.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys
from typing import List, Optional


def _print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=1)
    sys.stdout.write('\n')


def cmd_layers(args: argparse.Namespace) -> int:
    """Print the layer table of every branch (or one with ``--exit``)."""
    from .model import NUM_EXITS, layer_table
    from .training import SHIPPED_CONFIG
    exits = [args.exit] if args.exit else list(range(1, NUM_EXITS + 1))
    rows = [r for e in exits for r in layer_table(SHIPPED_CONFIG, e)]
    if args.json:
        _print_json({'model_id': SHIPPED_CONFIG.model_id(), 'layers': [
            {'exit': r.exit, 'index': r.index, 'name': r.name, 'type': r.kind,
             'input_shape': list(r.in_shape), 'output_shape': list(r.out_shape),
             'output_bytes': r.out_bytes, 'flops': r.flops} for r in rows]})
        return 0
    print(f'model {SHIPPED_CONFIG.model_id()}  (split s = run layers [0, s) on the robot; '
          'output bytes are fp32)')
    for e in exits:
        print(f'\nexit {e}:')
        print(f'  {"idx":>3} {"name":<14} {"type":<8} {"input":<14} {"output":<14} '
              f'{"out bytes":>10} {"MFLOPs":>8}')
        for r in layer_table(SHIPPED_CONFIG, e):
            fmt = 'x'.join
            print(f'  {r.index:>3} {r.name:<14} {r.kind:<8} {fmt(map(str, r.in_shape)):<14} '
                  f'{fmt(map(str, r.out_shape)):<14} {r.out_bytes:>10} {r.flops / 1e6:>8.3f}')
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train the 5-exit AlexNet on CIFAR-10 and write weights, accuracy table and plot."""
    from .data import load_split
    from .training import TrainConfig, train, write_training_report
    x_train, y_train = load_split('train', args.data_dir)
    x_test, y_test = load_split('test', args.data_dir)
    if args.test_limit:
        step = max(1, len(x_test) // args.test_limit)  # sorted by class: take every k-th
        x_test, y_test = x_test[::step][:args.test_limit], y_test[::step][:args.test_limit]
    cfg = TrainConfig(epochs=args.epochs, seed=args.seed, threads=args.threads,
                      train_limit=args.train_limit, batch_size=args.batch_size,
                      max_lr=args.max_lr)
    print(f'training on {args.train_limit or len(x_train)} images, '
          f'testing on {len(x_test)}, {cfg.epochs} epochs', file=sys.stderr)
    result = train(cfg, x_train, y_train, x_test, y_test, progress=not args.no_progress,
                   log=lambda s: print(s, file=sys.stderr, flush=True))
    table = write_training_report(result, Path(args.out), len(x_test))
    print(json.dumps({'model_id': table['model_id'], 'exits': table['exits'],
                      'train_time_s': table['train_time_s'], 'out': str(args.out)}))
    return 0


def _load_problem(args: argparse.Namespace):
    from .artifacts import load_accuracy, load_confidence, load_encodings, read_config
    from .optimizer import EdgentProblem, scale_robot
    from .regression import LatencyModels
    cfg = read_config(args.weights)
    accuracy = load_accuracy(args.accuracy, model_id=cfg.model_id())
    models = LatencyModels.load(args.latency_models, model_id=cfg.model_id())
    encodings = getattr(args, 'encodings', None) or ['raw']
    threshold = getattr(args, 'confidence_threshold', 0.0) or 0.0
    table = load_encodings(args.accuracy, cfg.model_id()) if encodings != ['raw'] else None
    conf = load_confidence(args.accuracy, cfg.model_id()) if threshold > 0 else None
    problem = EdgentProblem.from_model(cfg, accuracy, models, overhead_ms=args.overhead_ms,
                                       encodings=encodings, encoding_table=table,
                                       confidence_threshold=threshold, confidence_table=conf)
    return cfg, scale_robot(problem, getattr(args, 'robot_time_scale', 1.0) or 1.0)


def cmd_plan(args: argparse.Namespace) -> int:
    """Print the Edgent decision for one bandwidth and deadline, from the shipped artifacts."""
    from .optimizer import decide_policy
    cfg, problem = _load_problem(args)
    d = decide_policy(problem, args.policy, args.bandwidth_mbps * 1e6, args.deadline_ms)
    out = d.to_dict()
    out.update(model_id=cfg.model_id(), policy=args.policy,
               branch_layers=problem.branch_len(d.exit_index))
    if args.json:
        _print_json({k: (v if not isinstance(v, float) or v == v and abs(v) != float('inf')
                         else str(v)) for k, v in out.items()})
        return 0
    n = problem.branch_len(d.exit_index)
    where = ('device-only' if d.split_index == n else 'edge-only' if d.split_index == 0
             else f'layers [0, {d.split_index}) on the robot, [{d.split_index}, {n}) on the edge')
    print(f'{args.policy} at {args.bandwidth_mbps:g} Mbit/s, deadline {args.deadline_ms:g} ms:')
    print(f'  exit {d.exit_index}, split {d.split_index} ({where})'
          + (f', tensor sent as {d.encoding}' if d.split_index < n else ''))
    print(f'  expected top-1 {100 * d.accuracy:.1f} %')
    print(f'  predicted latency {d.total_ms:.2f} ms = device {d.device_ms:.2f} + transfer '
          f'{d.transfer_ms:.2f} + edge {d.edge_ms:.2f}')
    print(f'  {"meets" if d.feasible else "MISSES"} the deadline' +
          (f': {d.reason}' if d.reason else ''))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """Print what the planner will load: model, per-exit accuracy, latency-model errors."""
    from .artifacts import ACCURACY_FORMAT, ARTIFACT_DIR, ACCURACY_FILE, load_json, read_config
    from .model import MultiExitAlexNet
    from .regression import LatencyModels
    cfg = read_config(args.weights)
    acc = load_json(args.accuracy or ARTIFACT_DIR / ACCURACY_FILE, ACCURACY_FORMAT)
    models = LatencyModels.load(args.latency_models, model_id=cfg.model_id())
    info = {
        'model_id': cfg.model_id(),
        'exits': acc['exits'],
        'params': sum(p.numel() for p in MultiExitAlexNet(cfg).parameters()),
        'dataset': acc.get('dataset'),
        'latency_mape': {h: (None if models.end_to_end_mape_pct(h) is None
                             else round(models.end_to_end_mape_pct(h) / 100.0, 4))
                         for h in models.hosts},
        'robot_emulation': models.emulation('robot') if 'robot' in models.hosts else None,
        'edge_batch_beta': (models.host_info.get('edge', {}).get('batch') or {}).get('beta'),
        'encodings': None, 'confidence_thresholds': None,
    }
    enc = acc.get('encodings')
    if isinstance(enc, dict) and enc.get('configs'):
        from .accuracy_table import int8_summary
        info['encodings'] = {'configs': len(enc['configs']), 'images': enc.get('images'),
                             'jpeg_quality': enc.get('jpeg_quality'),
                             'kinds': sorted({r['encoding'] for r in enc['configs']}),
                             'int8': int8_summary(enc['configs'])}
    conf = acc.get('confidence')
    if isinstance(conf, dict):
        info['confidence_thresholds'] = conf.get('thresholds')
    if args.json:
        _print_json(info)
        return 0
    print(f'model {info["model_id"]}, {info["params"]} parameters ({info["dataset"]})')
    for r in info['exits']:
        print(f'  exit {r["exit"]}: top-1 {100 * r["top1"]:.2f} %')
    for h, m in info['latency_mape'].items():
        print(f'  latency model {h}: end-to-end MAPE {m if m is None else f"{100 * m:.1f} %"}')
    if info['edge_batch_beta'] is not None:
        print(f'  edge batch cost: T_b / T_1 = 1 + {info["edge_batch_beta"]:g} (b - 1)')
    e = info['encodings']
    if e:
        i8 = e['int8']
        print(f'  encodings measured: {", ".join(e["kinds"])} ({e["configs"]} (exit, split, '
              f'encoding) rows, {e["images"]} images); int8 {i8.get("bytes_cut_min")}x fewer '
              f'bytes, at most {i8.get("top1_loss_max_points")} points lost')
    else:
        print('  encodings: not measured (edgent-ros accuracy)')
    if info['confidence_thresholds']:
        print(f'  confidence early-exit table: {len(info["confidence_thresholds"])} thresholds')
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Run edge, planner and camera as processes over DDS and print every frame's outcome."""
    from .demo import run_demo
    return run_demo(args)


def _add_artifact_args(s: argparse.ArgumentParser) -> None:
    s.add_argument('--weights', type=Path, default=None, help='weights (default: shipped)')
    s.add_argument('--accuracy', type=Path, default=None, help='accuracy table JSON')
    s.add_argument('--latency-models', type=Path, default=None, help='latency models JSON')
    s.add_argument('--overhead-ms', type=float, default=2.0, help='per-message link overhead')


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``edgent-ros``."""
    from .artifacts import ARTIFACT_DIR
    p = argparse.ArgumentParser(prog='edgent-ros', description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest='cmd', required=True)

    s = sub.add_parser('layers', help='print the layer table of the multi-exit model')
    s.add_argument('--exit', type=int, choices=range(1, 6), help='only this exit')
    s.add_argument('--json', action='store_true', help='machine-readable output')
    s.set_defaults(func=cmd_layers)

    s = sub.add_parser('train', help='train the 5-exit AlexNet on CIFAR-10')
    s.add_argument('--data-dir', type=Path, default=None,
                   help='folder with train.tar.gz/test.tar.gz (default: ../shared/data/cifar10)')
    s.add_argument('--out', type=Path, default=ARTIFACT_DIR, help='artifact folder to write')
    s.add_argument('--epochs', type=int, default=14)
    s.add_argument('--batch-size', type=int, default=128)
    s.add_argument('--max-lr', type=float, default=0.1)
    s.add_argument('--seed', type=int, default=0)
    s.add_argument('--threads', type=int, default=2)
    s.add_argument('--train-limit', type=int, default=None, help='use only N training images')
    s.add_argument('--test-limit', type=int, default=None, help='evaluate on N test images')
    s.add_argument('--no-progress', action='store_true', help='no progress bars')
    s.set_defaults(func=cmd_train)

    from .optimizer import POLICIES
    s = sub.add_parser('plan', help='print the exit/split decision for a bandwidth and deadline')
    s.add_argument('--bandwidth-mbps', type=float, required=True, help='uplink Mbit/s')
    s.add_argument('--deadline-ms', type=float, required=True, help='latency deadline (ms)')
    s.add_argument('--policy', choices=POLICIES, default='edgent')
    s.add_argument('--encodings', nargs='+', default=['raw'], metavar='ENC',
                   help='encodings the edgent policy may choose (raw fp16 int8 int8-zlib '
                   'compressed png jpeg); default raw = the paper\'s')
    s.add_argument('--confidence-threshold', type=float, default=0.0,
                   help='plan for BranchyNet early exit at this entropy threshold (nats)')
    s.add_argument('--robot-time-scale', type=float, default=1.0,
                   help='robot layer times x this (a slower robot class; the sweep uses 60)')
    s.add_argument('--json', action='store_true')
    _add_artifact_args(s)
    s.set_defaults(func=cmd_plan)

    s = sub.add_parser('info', help='print the model, accuracy table and latency-model errors')
    s.add_argument('--json', action='store_true')
    _add_artifact_args(s)
    s.set_defaults(func=cmd_info)

    s = sub.add_parser('demo', help='co-inference demo: camera -> edge over DDS, bundled images')
    s.add_argument('--frames', type=int, default=60, help='frames to run')
    s.add_argument('--fps', type=float, default=10.0)
    s.add_argument('--deadline-ms', type=float, default=100.0)
    s.add_argument('--policy', choices=POLICIES, default='edgent')
    s.add_argument('--exit', type=int, default=None, help='fixed exit (no planner)')
    s.add_argument('--split', type=int, default=None, help='fixed split (no planner)')
    s.add_argument('--source', default='sample', choices=['sample', 'cifar10-test'])
    s.add_argument('--quiet', action='store_true', help='summary only')
    s.set_defaults(func=cmd_demo)

    for mod, fn in (('profiling', 'add_profile_parser'), ('regression', 'add_fit_parser'),
                    ('bag_tools', 'add_bag_parsers'), ('testbed', 'add_testbed_parser'),
                    ('sweep_session', 'add_sweep_parser'),
                    ('config_map', 'add_build_map_parser'),
                    ('accuracy_table', 'add_accuracy_parser'),
                    ('batching', 'add_profile_batch_parser')):
        getattr(__import__(f'edgent_ros.{mod}', fromlist=[fn]), fn)(sub)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``edgent-ros`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f'edgent-ros {args.cmd}: error: {exc}', file=sys.stderr)
        return 2
    except BrokenPipeError:   # output piped into `head` and closed
        sys.stderr.close()
        return 0


if __name__ == '__main__':
    sys.exit(main())
