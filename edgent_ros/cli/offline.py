"""
``edgent-ros`` subcommands of the offline phase and planning.

Layers, train, profile, fit, profile-batch, accuracy, train-bottleneck, plan, info, build-map.
Modules without a heavy dependency are imported at the top; handlers import the torch-based ones
(training, profiling, accuracy, bottlenecks, weights, inference) when they run, and scikit-learn,
scipy and matplotlib load inside the functions that use them: ``--help``, ``plan`` and ``info``
load none of them (test/test_layers.py).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
import signal
import sys
from typing import Any, Optional

from ..core.arch import layer_table, NUM_EXITS, parameter_count, SHIPPED_CONFIG
from ..core.artifacts import (ACCURACY_FILE, ACCURACY_FORMAT, ARTIFACT_DIR, int8_summary,
                              LATENCY_FILE, load_accuracy, load_confidence, load_encodings,
                              load_json, read_config, save_json)
from ..core.config_map import DEFAULT_MET_TARGET
from . import models as model_cli
from ..core.latency import LatencyModels
from ..core.model_desc import load_description
from ..core.model_plan import ACCURACY_FORMAT as MODEL_ACCURACY_FORMAT
from ..core.optimizer import decide_policy, EdgentProblem, POLICIES, scale_robot
from ..offline.batch_profile import BATCH_SIZES, CONFIGS, fit_beta, measure, plot
from ..core.datasets import load_split
from ..core.paths import artifacts_out, DATA_ENV, HOME_ENV, results_out
from ..offline.fit import (choose_dispatch_fraction, DISPATCH_FRACTION, end_to_end_check,
                           fit_latency_models, plot_end_to_end)
from ..offline.hosts import (BRANCH_PARTS, CGROUP_CPU_ROOT, DEFAULT_CGROUP, DEFAULT_CPU_PERIOD_US,
                             DEFAULT_CPU_QUOTA, DEFAULT_REPEATS, DEFAULT_ROBOT_THREADS,
                             DEFAULT_WARMUP, HOSTS)
from ..offline.map_builder import build_map, read_trace


def _print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=1)
    sys.stdout.write('\n')


def cmd_layers(args: argparse.Namespace) -> int:
    """Print the layer table of every branch (or one with ``--exit``)."""
    if args.model:
        return model_cli.cmd_layers_model(args)
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
    x_train, y_train = load_split('train', args.data_dir)   # a missing data set fails first
    x_test, y_test = load_split('test', args.data_dir)
    from ..offline.training import train, TrainConfig, write_training_report
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
    out = Path(args.out) if args.out else artifacts_out()
    table = write_training_report(result, out, len(x_test))
    print(json.dumps({'model_id': table['model_id'], 'exits': table['exits'],
                      'train_time_s': table['train_time_s'], 'out': str(out)}))
    return 0


def _load_problem(args: argparse.Namespace):
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
    if args.model:
        return model_cli.cmd_plan_model(args)
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
    cfg = read_config(args.weights)
    acc = load_json(args.accuracy or ARTIFACT_DIR / ACCURACY_FILE, ACCURACY_FORMAT)
    models = LatencyModels.load(args.latency_models, model_id=cfg.model_id())
    info = {
        'model_id': cfg.model_id(),
        'exits': acc['exits'],
        'params': parameter_count(cfg),
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


def _add_artifact_args(s: argparse.ArgumentParser) -> None:
    s.add_argument('--weights', type=Path, default=None,
                   help='weights safetensors to read (default: the shipped one)')
    s.add_argument('--accuracy', type=Path, default=None,
                   help='accuracy table JSON to read (default: the shipped one)')
    s.add_argument('--latency-models', type=Path, default=None,
                   help='latency models JSON to read (default: the shipped one)')
    s.add_argument('--overhead-ms', type=float, default=2.0,
                   help='per-message link overhead in ms (default %(default)s)')


def _results_dir(args: argparse.Namespace) -> Path:
    """Return ``--results`` or ``<user dir>/results`` (``core.paths``)."""
    return Path(args.results) if getattr(args, 'results', None) else results_out()


RESULTS_HELP = 'folder of the default CSV/PNG paths below (default: <user dir>/results)'
USER_DIR_NOTE = (f'<user dir> is ${HOME_ENV}, else $XDG_DATA_HOME/edgent_ros, else '
                 '~/.local/share/edgent_ros')
DATA_NOTE = (f'CIFAR-10 is looked for in --data-dir, else ${DATA_ENV}/cifar10 when that is set, '
             'otherwise <user dir>/data/cifar10, then ../shared/data/cifar10 beside a source '
             'checkout.')
DATA_DIR_HELP = ('CIFAR-10 folder with train.tar.gz/test.tar.gz (default: '
                 f'${DATA_ENV}/cifar10, else <user dir>/data/cifar10, ...)')


def cmd_profile(args: argparse.Namespace) -> int:
    """Run ``edgent-ros profile``: time layers (and branches) on the robot or the edge."""
    import torch
    from ..offline.profiling import HostInfo, RobotCpuLimit, run_profile, Timing
    from ..offline.model_tools import run_profile_model
    if args.host not in HOSTS:
        raise ValueError(f'--host must be one of {HOSTS}, got {args.host!r}')
    repeats = args.repeats if args.repeats is not None else DEFAULT_REPEATS[args.host]
    timing = Timing(repeats, args.warmup)
    if args.threads is not None and args.threads < 1:
        raise ValueError(f'--threads must be >= 1, got {args.threads}')
    results = _results_dir(args)
    args.out = args.out or results / f'profile_{args.host}.csv'
    args.branches_out = args.branches_out or results / f'branches_{args.host}.csv'

    def run_profile(args, host, timing, run_layers=run_profile):
        if args.model:      # direct per-block measurement of a described model
            return run_profile_model(args.model, host, timing, args.model_latency,
                                     host.window_s, log=lambda s: print(s, file=sys.stderr))
        return run_layers(args, host, timing)
    # SIGTERM -> SystemExit, so RobotCpuLimit leaves and removes its cgroup.
    old = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        if args.host == 'edge':
            old_threads = torch.get_num_threads()
            threads = args.threads or old_threads
            torch.set_num_threads(threads)
            try:
                summary = run_profile(args, HostInfo('edge', 'none', threads), timing)
            finally:
                torch.set_num_threads(old_threads)
        else:
            with RobotCpuLimit(args.cpu_quota, args.threads or DEFAULT_ROBOT_THREADS,
                               args.cpu_period_us, args.cgroup, args.slowdown_factor,
                               force_factor=args.emulation == 'factor') as lim:
                host = HostInfo('robot', lim.emulation, lim.threads, lim.quota,
                                lim.period_us if lim.emulation == 'cgroup' else None,
                                lim.time_factor, lim.window_s())
                if lim.emulation != 'cgroup' and args.emulation != 'factor':
                    print(f'profile: no cgroup v1 cpu controller (or not root): robot emulated '
                          f'by 1 thread x slowdown factor {lim.time_factor:g}', file=sys.stderr)
                summary = run_profile(args, host, timing)
    finally:
        signal.signal(signal.SIGTERM, old)
    print(json.dumps(summary))
    return 0


def add_profile_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``profile`` subcommand on ``subparsers`` (from ``add_subparsers``)."""
    s = subparsers.add_parser(
        'profile', help='time layers and model branches on the robot or edge host',
        description='Time many layer configurations per kind at batch size 1 and write one CSV '
                    'row per configuration; then time every prefix/suffix of the real model '
                    '(for the end-to-end check of `fit`). --host robot runs inside a cgroup v1 '
                    'CPU quota when root, else 1 thread x a slowdown factor. ' + USER_DIR_NOTE
                    + '.')
    s.add_argument('--host', required=True, choices=HOSTS, help='which side to emulate')
    s.add_argument('--results', type=Path, default=None, help=RESULTS_HELP)
    s.add_argument('--out', type=Path, default=None,
                   help='layer CSV to write (default <results>/profile_<host>.csv)')
    s.add_argument('--branches-out', type=Path, default=None,
                   help='branch CSV to write (default <results>/branches_<host>.csv)')
    s.add_argument('--no-branches', action='store_true', help='skip the branch measurements')
    s.add_argument('--branch-parts', default=','.join(BRANCH_PARTS),
                   help='comma list of prefix,suffix,layer (default all)')
    s.add_argument('--weights', type=Path, default=None,
                   help='model weights for the branches (default: shipped weights if present, '
                        'else random init; timing does not depend on weight values)')
    s.add_argument('--quick', action='store_true', help='20 configurations only (smoke test)')
    s.add_argument('--repeats', type=int, default=None,
                   help=f'timed samples per item (default {DEFAULT_REPEATS})')
    s.add_argument('--warmup', type=int, default=DEFAULT_WARMUP, help='untimed calls first')
    s.add_argument('--threads', type=int, default=None,
                   help='torch threads (default: edge torch\'s default, robot '
                   f'{DEFAULT_ROBOT_THREADS})')
    s.add_argument('--cpu-quota', type=float, default=DEFAULT_CPU_QUOTA,
                   help='robot: fraction of one CPU (default %(default)s)')
    s.add_argument('--cpu-period-us', type=int, default=DEFAULT_CPU_PERIOD_US,
                   help='robot: cpu.cfs_period_us (default %(default)s)')
    s.add_argument('--emulation', choices=('auto', 'factor'), default='auto',
                   help='robot: auto = cgroup CPU quota when root, else factor; factor = 1 '
                        'thread x slowdown factor (what the testbed camera\'s '
                        'compute_slowdown does to each frame)')
    s.add_argument('--slowdown-factor', type=float, default=None,
                   help='robot without cgroup: multiply times by this (default 1/cpu-quota)')
    s.add_argument('--cgroup', default=DEFAULT_CGROUP, help='robot: cgroup name under '
                   f'{CGROUP_CPU_ROOT} (default %(default)s)')
    s.add_argument('--seed', type=int, default=0, help='configuration sample and run order')
    s.add_argument('--no-progress', action='store_true', help='no progress bars')
    s.add_argument('--model', type=Path, default=None,
                   help='a model description: time each of its blocks and side heads at '
                        'batch 1 instead (direct measurement), into <name>.latency.json')
    s.add_argument('--model-latency', type=Path, default=None,
                   help='with --model: block-latency JSON to merge into (default beside the '
                        'description)')
    s.set_defaults(func=cmd_profile)
    return s


def _fmt(v: Optional[float]) -> str:
    return '-' if v is None else f'{v:.1f}'


def cmd_fit(args: argparse.Namespace) -> int:
    """Run ``edgent-ros fit``: regressions from the profile CSVs, end-to-end check, artifact."""
    from ..offline.profiling import BRANCH_COLUMNS, PROFILE_COLUMNS, read_csv
    cfg = SHIPPED_CONFIG
    results = _results_dir(args)
    for host in ('robot', 'edge'):   # defaults: where `profile` writes them
        if getattr(args, host) is None:
            setattr(args, host, results / f'profile_{host}.csv')
        if getattr(args, f'{host}_branches') is None:
            setattr(args, f'{host}_branches', results / f'branches_{host}.csv')
    args.plot = args.plot or results / 'latency_fit.png'
    args.out = args.out or artifacts_out(LATENCY_FILE)
    paths = {'robot': Path(args.robot), 'edge': Path(args.edge)}
    for host, p in paths.items():
        if not p.is_file():
            raise FileNotFoundError(f'{p}: profile CSV of the {host} not found (run '
                                    f'`edgent-ros profile --host {host}` first)')
    rows = {h: read_csv(p, PROFILE_COLUMNS) for h, p in paths.items()}
    auto = args.dispatch_fraction == 'auto'
    fraction = DISPATCH_FRACTION if auto else float(args.dispatch_fraction)
    models = fit_latency_models(rows, args.seed, paths, fraction)
    branch_paths = {'robot': Path(args.robot_branches), 'edge': Path(args.edge_branches)}
    selection = {}
    if auto:
        for h, p in branch_paths.items():
            if p.is_file():
                selection[h] = choose_dispatch_fraction(models, cfg, h, rows[h],
                                                        read_csv(p, BRANCH_COLUMNS))
                models.host_info[h]['dispatch']['selection'] = selection[h]
    print(f'{"host":<6} {"kind":<8} {"n":>4} {"transform":<12} {"weighting":<9} '
          f'{"held-out MAPE %":>15} {"CV MAPE %":>9} {"CV pred/meas":>12} {"fit MAPE %":>10}')
    for h in models.hosts:
        for k in models.kinds(h):
            m = models.kind_model(h, k)
            s = m.stats
            ratio = s.get('cv_median_ratio')
            print(f'{h:<6} {k:<8} {s["n_samples"]:>4} {m.transform:<12} {m.weighting:<9} '
                  f'{_fmt(s["heldout_mape_pct"]):>15} {_fmt(s["cv_mape_pct"]):>9} '
                  f'{"-" if ratio is None else f"{ratio:.2f}":>12} '
                  f'{_fmt(s["train_mape_pct"]):>10}')
    for h in models.hosts:
        d = models.host_info[h].get('dispatch')
        if d:
            sel = selection.get(h)
            print(f'dispatch {h}: {1e3 * d["dispatch_ms"]:.2f} us per layer = {d["fraction"]:g} x '
                  f'median {d["floor_kind"]} time {1e3 * d["floor_ms"]:.2f} us (n={d["n"]})'
                  + (f'; chosen by leave-one-exit-out CV (per held-out exit '
                     f'{sel["per_exit"]}), held-out end-to-end MAPE '
                     f'{sel["heldout_mape_pct"]:.1f} %' if sel else ''))
    points, summaries = {}, {}
    for h, p in branch_paths.items():
        if not p.is_file():
            print(f'fit: warning: {p} not found; no end-to-end check for the {h}',
                  file=sys.stderr)
            continue
        summaries[h], points[h] = end_to_end_check(models, cfg, h, read_csv(p, BRANCH_COLUMNS),
                                                   p)
        models.host_info[h]['end_to_end'] = summaries[h]
        s = summaries[h]
        others = ', '.join(f'{q} {s[f"mape_{q}_pct"]:.1f} %'
                           for q in ('prefix', 'suffix', 'layer')
                           if f'mape_{q}_pct' in s and q != s['part'])
        emu = models.host_info[h]['emulation']['emulation']
        bias = s.get('median_ratio')
        print(f'end-to-end {h} ({emu}): {s["part"]}es MAPE {_fmt(s["mape_pct"])} % over '
              f'{s["n"]} (exit, split)' + (f', median pred/meas {bias:.2f}' if bias else '')
              + (f'; also {others}' if others else ''))
    if points:
        plot_end_to_end(points, summaries, Path(args.plot))
        print(f'plot: {args.plot}')
    models.save(Path(args.out), cfg.model_id())
    print(f'latency models: {args.out} (model {cfg.model_id()})')
    return 0


def _fraction_arg(text: str) -> Any:
    if text == 'auto':
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected a number or auto, got {text!r}') from None


def add_fit_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``fit`` subcommand on ``subparsers`` (from ``add_subparsers``)."""
    s = subparsers.add_parser(
        'fit', help='fit the per-(host, layer kind) latency regressions',
        description='Fit one regression per host and layer kind on the profile CSVs, check the '
                    'predicted device/edge time of every (exit, split) against the branch '
                    'measurements, and write the latency-model artifact (JSON). '
                    + USER_DIR_NOTE + '.')
    s.add_argument('--results', type=Path, default=None,
                   help='folder of the default profile/branch CSVs and plot below (default: '
                        '<user dir>/results, where `profile` writes)')
    s.add_argument('--robot', type=Path, default=None,
                   help='layer profile of the robot (default <results>/profile_robot.csv)')
    s.add_argument('--edge', type=Path, default=None,
                   help='layer profile of the edge (default <results>/profile_edge.csv)')
    s.add_argument('--robot-branches', type=Path, default=None,
                   help='branch measurements of the robot (default '
                        '<results>/branches_robot.csv)')
    s.add_argument('--edge-branches', type=Path, default=None,
                   help='branch measurements of the edge (default <results>/branches_edge.csv)')
    s.add_argument('--out', type=Path, default=None,
                   help='latency-model JSON to write (default '
                        f'<user dir>/artifacts/{LATENCY_FILE})')
    s.add_argument('--plot', type=Path, default=None,
                   help='predicted-vs-measured scatter PNG (default <results>/latency_fit.png)')
    s.add_argument('--seed', type=int, default=0, help='held-out split and CV folds')
    s.add_argument('--dispatch-fraction', type=_fraction_arg, default='auto',
                   help='per-layer model.run dispatch time as a fraction of the host\'s median '
                        'dropout (identity) time; 0: none; auto (default): chosen per host by '
                        'leave-one-exit-out cross-validation on the branch measurements')
    s.set_defaults(func=cmd_fit)
    return s


def cmd_profile_batch(args) -> int:
    """``edgent-ros profile-batch``: measure, fit, plot, merge into the latency models."""
    import torch
    from tqdm import tqdm
    from ..core.weights import load_model
    from ..core.inference import CoInference
    torch.set_num_threads(args.threads)
    runner = CoInference(load_model(args.weights))
    with tqdm(total=len(CONFIGS), desc=f'batch cost on {args.host}', unit='cfg',
              disable=args.no_progress) as bar:
        rows = measure(runner, repeats=args.repeats, progress=bar.update)
    beta = fit_beta(rows)
    out = Path(args.out_dir) if args.out_dir else results_out()
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f'batch_{args.host}.csv', 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    plot(rows, beta, out / f'batch_{args.host}.png')
    info = {'beta': round(beta, 4), 'threads': args.threads, 'sizes': list(BATCH_SIZES),
            'configs': [list(c) for c in CONFIGS], 'repeats': args.repeats}
    if not args.no_merge:
        models = LatencyModels.load(args.latency_models)   # None: the shipped one
        models.host_info.setdefault(args.host, {})['batch'] = info
        path = Path(args.out or args.latency_models or artifacts_out(LATENCY_FILE))
        models.save(path, models.model_id)
        info['merged_into'] = str(path)
    print(json.dumps(info))
    return 0


def add_profile_batch_parser(sub) -> None:
    """Register ``edgent-ros profile-batch``."""
    s = sub.add_parser('profile-batch', help='measure the edge\'s batched-forward cost and '
                       'merge it into the latency models (after fit)',
                       description='Time batches of 1 to 8 frames on real model suffixes, fit the '
                       'batch cost, write batch_<host>.csv/.png and merge the fit into a '
                       'latency-model JSON. ' + USER_DIR_NOTE + '.')
    s.add_argument('--host', default='edge', choices=['edge', 'robot'],
                   help='host the result is stored under (default %(default)s)')
    s.add_argument('--threads', type=int, default=2, help='torch threads (default %(default)s)')
    s.add_argument('--repeats', type=int, default=30,
                   help='timed runs per (configuration, batch size) (default %(default)s)')
    s.add_argument('--weights', type=Path, default=None,
                   help='weights safetensors (default: the shipped one)')
    s.add_argument('--latency-models', type=Path, default=None,
                   help='latency models JSON to merge into (default: the shipped one; after '
                        'your own `fit`, pass its --out)')
    s.add_argument('--out', type=Path, default=None,
                   help='merged latency models JSON to write (default: --latency-models when '
                        f'given, else <user dir>/artifacts/{LATENCY_FILE})')
    s.add_argument('--no-merge', action='store_true', help='only write the CSV and plot')
    s.add_argument('--out-dir', type=Path, default=None,
                   help='folder for batch_<host>.csv/.png (default <user dir>/results)')
    s.add_argument('--no-progress', action='store_true', help='no progress bar')
    s.set_defaults(func=cmd_profile_batch)


def cmd_accuracy(args) -> int:
    """Measure the per-(exit, split, encoding) and confidence tables into the accuracy JSON."""
    x, y = load_split('test', args.data_dir)   # a missing data set fails before torch loads
    import torch
    from tqdm import tqdm
    from ..core.weights import load_model
    from ..offline.accuracy import (count_configs, encodings_section, exit_probabilities,
                                    measure_confidence, measure_encodings)
    torch.set_num_threads(args.threads)
    body = load_json(args.accuracy or ARTIFACT_DIR / ACCURACY_FILE, ACCURACY_FORMAT)
    model = load_model(args.weights, expected_model_id=body.get('model_id'))
    if args.limit:
        step = max(1, len(x) // args.limit)   # sorted by class: every k-th keeps all classes
        x, y = x[::step][:args.limit], y[::step][:args.limit]
    print(f'measuring on {len(x)} test images', file=sys.stderr)
    probs = exit_probabilities(model, x)
    body['confidence'] = measure_confidence(probs, y)
    with tqdm(total=count_configs(model), desc='(exit, split) x encodings', unit='cfg',
              disable=args.no_progress) as bar:
        rows = measure_encodings(model, x, y, progress=lambda k: bar.update(k - bar.n))
    body['encodings'] = encodings_section(rows, len(x))
    body.pop('format', None)
    body.pop('sha256', None)
    path = Path(args.out or args.accuracy or artifacts_out(ACCURACY_FILE))
    save_json(body, path, ACCURACY_FORMAT)
    summary = int8_summary(rows)
    print(json.dumps({'out': str(path), 'configs': len(rows), 'int8': summary}))
    return 0


def add_accuracy_parser(sub) -> None:
    """Register ``edgent-ros accuracy``."""
    s = sub.add_parser('accuracy', help='measure top-1 per (exit, split, encoding) and per '
                       'confidence threshold on the test set (into the accuracy JSON)',
                       description='Run every (exit, split, encoding) and the confidence '
                       'early exit on the CIFAR-10 test images and write the accuracy JSON '
                       'with those tables. ' + USER_DIR_NOTE + '. ' + DATA_NOTE)
    s.add_argument('--weights', type=Path, default=None,
                   help='weights safetensors (default: the shipped one)')
    s.add_argument('--accuracy', type=Path, default=None,
                   help='accuracy JSON to extend (default: the shipped one)')
    s.add_argument('--out', type=Path, default=None,
                   help='accuracy JSON to write (default: --accuracy when given, else '
                        f'<user dir>/artifacts/{ACCURACY_FILE})')
    s.add_argument('--data-dir', type=Path, default=None, help=DATA_DIR_HELP)
    s.add_argument('--limit', type=int, default=None, help='use only N test images')
    s.add_argument('--threads', type=int, default=2, help='torch threads (default %(default)s)')
    s.add_argument('--no-progress', action='store_true', help='no progress bar')
    s.set_defaults(func=cmd_accuracy)


# The shipped set's recipe (SPLIT:X entries apply only when SPLIT is among --splits)
BOTTLENECK_SPLITS = [3, 6, 10, 13]
BOTTLENECK_WIDTHS = ['3:2', '3:4', '3:8', '6:4', '10:4', '13:4', '13:8']
BOTTLENECK_STRIDES = ['3:2']
BOTTLENECK_EPOCHS = ['10']


def _defaults_for(items: Any, splits: Any) -> list:
    """Return the default entries ``N`` / ``SPLIT:N`` that apply to ``splits``."""
    return [e for e in items if ':' not in e or int(e.split(':')[0]) in splits]


def cmd_train_bottleneck(args: argparse.Namespace) -> int:
    """Train learned bottlenecks at trunk cuts, measure them, merge them into the accuracy JSON."""
    from ..core.bottleneck import BOTTLENECK_FILE, default_path
    if args.measure_only and args.no_measure:
        raise ValueError('--measure-only and --no-measure exclude each other')
    desc = None
    if args.model:   # a described model: its own cuts, accuracy table and set beside it
        if args.weights:
            raise ValueError(f'give --model ({args.model}) or --weights ({args.weights}), not '
                             'both: a description names its own weights')
        desc = load_description(args.model)
        if args.splits is None or args.widths is None:
            raise ValueError('--model: give --splits and --widths (the defaults are the shipped '
                             'AlexNet\'s cuts); `edgent-ros layers --model DESC` lists the cuts')
    splits = args.splits or BOTTLENECK_SPLITS
    acc_in = args.accuracy or (desc.derived('.accuracy.json') if desc
                               else ARTIFACT_DIR / ACCURACY_FILE)
    acc_format = MODEL_ACCURACY_FORMAT if desc is not None else ACCURACY_FORMAT
    body = load_json(acc_in, acc_format) if not args.no_measure else None
    cfg = read_config(args.weights) if desc is None else None
    out = Path(args.out) if args.out else (default_path(desc) if desc
                                           else artifacts_out(BOTTLENECK_FILE))
    if body is not None and cfg is not None and body.get('model_id') != cfg.model_id():
        raise ValueError(f'{acc_in}: accuracy table of model {body.get("model_id")!r}, the '
                         f'weights are {cfg.model_id()!r}')
    if not args.measure_only:
        x_train, y_train = load_split('train', args.data_dir)   # missing data fails first
    if not args.no_measure:
        x_test, y_test = load_split('test', args.data_dir)
    import torch
    from ..core.bottleneck import load_bottlenecks
    from ..offline import bottleneck_training as bt
    torch.set_num_threads(args.threads)
    if desc is None:
        from ..core.weights import load_model
        model = load_model(args.weights, expected_model_id=cfg.model_id())
    else:
        from ..core.described import build_described
        model = build_described(desc)
        if body is not None and body.get('model_id') != model.model_id:
            raise ValueError(f'{acc_in}: accuracy table of model {body.get("model_id")!r}, '
                             f'{args.model} is {model.model_id!r} (run `edgent-ros train-exits` '
                             'again)')
    log = (lambda s: print(s, file=sys.stderr, flush=True))
    train_info = None
    if args.measure_only:
        bset = load_bottlenecks(out, model.model_id)
    else:
        strides = args.stride or (['1'] if desc else _defaults_for(BOTTLENECK_STRIDES, splits))
        specs = bt.parse_specs(model, splits,
                               args.widths or _defaults_for(BOTTLENECK_WIDTHS, splits),
                               strides or ['1'])
        items = args.epochs or _defaults_for(BOTTLENECK_EPOCHS, splits)
        epochs, split_epochs = bt.parse_epochs(splits, items)
        tcfg = bt.BottleneckTrainConfig(epochs=epochs, split_epochs=split_epochs,
                                        batch_size=args.batch_size,
                                        lr=args.lr, flip=args.flip, seed=args.seed,
                                        threads=args.threads, train_limit=args.limit)
        print(f'training {", ".join(f"{s.name}@{s.split}" for s in specs)} on '
              f'{args.limit or len(x_train)} images, {tcfg.epochs} epochs each'
              + ''.join(f' ({e} at split {s})' for s, e in sorted(split_epochs.items())),
              file=sys.stderr)
        result = bt.train_bottlenecks(model, specs, x_train, y_train, tcfg,
                                      progress=not args.no_progress, log=log)
        bset = result['set']
        bset.save(out)
        train_info = {k: result[k] for k in ('train_config', 'elapsed_s', 'precompute_s',
                                             'per_spec_s', 'train_images', 'history')}
    summary = {'out': str(out), 'bottleneck_id': bset.bottleneck_id,
               'specs': [f'{s.name}@{s.split}' for s in bset.specs()]}
    if train_info:
        summary['train_time_s'] = train_info['elapsed_s']
    if not args.no_measure:
        if args.test_limit:
            step = max(1, len(x_test) // args.test_limit)   # sorted by class: every k-th
            x_test, y_test = x_test[::step][:args.test_limit], y_test[::step][:args.test_limit]
        print(f'measuring on {len(x_test)} test images', file=sys.stderr)
        rows, section = bt.measure_bottlenecks(model, bset, x_test, y_test)
        frames = None
        if desc is not None and not isinstance(body.get('encodings'), dict):
            print('measuring the raw and JPEG frames the bottlenecks compete with',
                  file=sys.stderr)
            frames = bt.frame_rows(model, x_test, y_test)
        acc_out = Path(args.accuracy_out or args.accuracy
                       or (acc_in if desc else artifacts_out(ACCURACY_FILE)))
        section['file'] = (out.name if out.resolve().parent == acc_out.resolve().parent
                           else str(out.resolve()))
        old = body.get('bottlenecks') or {}
        if train_info is None and old.get('bottleneck_id') == bset.bottleneck_id:
            train_info = old.get('train')     # measured again: keep how it was trained
        if train_info is not None:
            section['train'] = train_info
        merged = bt.merge_into_accuracy(body, rows, section, frames)
        save_json(merged, acc_out, acc_format)
        summary.update(accuracy_out=str(acc_out), table=bt.summary_table(merged))
        if args.plot:
            bt.plot_bottlenecks(merged, Path(args.plot))
            summary['plot'] = str(args.plot)
    print(json.dumps(summary))
    return 0


def add_train_bottleneck_parser(sub: Any) -> None:
    """Register ``edgent-ros train-bottleneck``."""
    s = sub.add_parser(
        'train-bottleneck', help='train learned bottlenecks (bn<c> encodings) at trunk cuts, '
        'measure them and add them to the accuracy JSON',
        description='Train an encoder (robot) / decoder (edge) pair per (split, width) by '
        'distillation from the frozen shipped model (feature MSE at the cut + KL to its logits '
        'at every exit the cut serves, int8 simulated), save them as one bottleneck set, then '
        'measure top-1 per (exit, split, bn<c>) on the test images with every frame sent '
        'through the int8 codec, the payload bytes and the encode/decode time, and merge them '
        'into the accuracy JSON (encodings rows + a bottlenecks section). '
        + USER_DIR_NOTE + '. ' + DATA_NOTE)
    s.add_argument('--model', type=Path, default=None, metavar='DESC',
                   help='a model description (edgent-ros import; e.g. the shipped '
                        'edgent_ros/artifacts/resnet64.model.yaml) instead of the shipped '
                        'AlexNet: --splits and --widths are then required, the set is written '
                        'beside it (<name>.bottlenecks.safetensors) and merged into its '
                        '<name>.accuracy.json with its raw and JPEG frames')
    s.add_argument('--splits', type=int, nargs='+', default=None, metavar='SPLIT',
                   help=f'trunk cuts to put bottlenecks at (default: {BOTTLENECK_SPLITS}; 3 = '
                        'after pool1, 6 = pool2, 8 = relu3, 10 = relu4, 13 = pool5)')
    s.add_argument('--widths', nargs='+', default=None, metavar='W|SPLIT:W',
                   help='channels sent (the encoding bn<W>): W at every split, SPLIT:W at one '
                        f'(default: {" ".join(BOTTLENECK_WIDTHS)}, the entries of --splits)')
    s.add_argument('--stride', nargs='+', default=None, metavar='S|SPLIT:S',
                   help='encoder stride (maps sent H/S x W/S): S at every split, SPLIT:S at one '
                        f'(default: {" ".join(BOTTLENECK_STRIDES)}, the entries of --splits; '
                        '1 elsewhere)')
    s.add_argument('--epochs', nargs='+', default=None, metavar='E|SPLIT:E',
                   help='epochs per bottleneck: E at every split, SPLIT:E at one (default: '
                        f'{" ".join(BOTTLENECK_EPOCHS)}, the SPLIT:E entries of --splits)')
    s.add_argument('--batch-size', type=int, default=128,
                   help='training batch size (default %(default)s)')
    s.add_argument('--lr', type=float, default=1e-2,
                   help='peak AdamW learning rate, one-cycle schedule (default %(default)s)')
    s.add_argument('--flip', action='store_true',
                   help='also train on the mirrored images (twice the steps per epoch)')
    s.add_argument('--out', type=Path, default=None,
                   help='bottleneck set to write (with --measure-only: to read) (default '
                        '<user dir>/artifacts/bottlenecks.safetensors)')
    s.add_argument('--weights', type=Path, default=None,
                   help='weights safetensors of the frozen model (default: the shipped one)')
    s.add_argument('--accuracy', type=Path, default=None,
                   help='accuracy JSON to extend (default: the shipped one)')
    s.add_argument('--accuracy-out', type=Path, default=None,
                   help='accuracy JSON to write (default: --accuracy when given, else '
                        f'<user dir>/artifacts/{ACCURACY_FILE})')
    s.add_argument('--plot', type=Path, default=None,
                   help='also draw bytes vs top-1 lost per cut (PNG) to this path')
    s.add_argument('--data-dir', type=Path, default=None, help=DATA_DIR_HELP)
    s.add_argument('--seed', type=int, default=0,
                   help='initialisation and shuffling seed (default %(default)s)')
    s.add_argument('--limit', type=int, default=None,
                   help='train on N training images only (a seeded subset; quick runs)')
    s.add_argument('--test-limit', type=int, default=None,
                   help='measure on N test images only (default: all 10,000)')
    s.add_argument('--threads', type=int, default=2, help='torch threads (default %(default)s)')
    s.add_argument('--no-measure', action='store_true',
                   help='only train and save the set; leave the accuracy JSON alone')
    s.add_argument('--measure-only', action='store_true',
                   help='train nothing: measure the set at --out and merge it into the '
                        'accuracy JSON')
    s.add_argument('--no-progress', action='store_true', help='no progress bars')
    s.set_defaults(func=cmd_train_bottleneck)


def cmd_build_map(args: argparse.Namespace) -> int:
    """Run ``edgent-ros build-map``."""
    traces = {Path(p).name: read_trace(Path(p)) for p in args.traces}
    cfg = read_config(args.weights)
    problem = scale_robot(EdgentProblem.from_model(
        cfg, load_accuracy(args.accuracy, model_id=cfg.model_id()),
        LatencyModels.load(args.latency_models, model_id=cfg.model_id()),
        overhead_ms=args.overhead_ms), args.robot_time_scale)
    body = build_map(problem, traces, args.deadlines, met_target=args.met_target)
    body.update(model_id=cfg.model_id(), robot_time_scale=args.robot_time_scale)
    out = Path(args.out) if args.out else artifacts_out('config_map.json')
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(body, indent=1) + '\n')
    secs = sum(w for rows in traces.values() for w, _ in rows)
    print(f'configuration map: {len(body["states"])} states x {len(args.deadlines)} deadlines '
          f'from {len(traces)} traces ({secs:.0f} s) -> {out}')
    for s in body['states']:
        hi = '∞' if s['hi_mbps'] is None else f'{s["hi_mbps"]:g}'
        cells = '  '.join(f'{d}:{c["exit"]}/{c["split"]}'
                          + (f'({100 * c["deadline_met"]:.0f}%)' if c['deadline_met'] is not None
                             else '(model)')
                          for d, c in s['configs'].items())
        print(f'  [{s["lo_mbps"]:g}, {hi}) Mbit/s {s["seconds"]:7.0f} s   {cells}',
              file=sys.stdout)
    return 0


def add_build_map_parser(sub: Any) -> None:
    """Register ``edgent-ros build-map``."""
    p = sub.add_parser('build-map', help='configuration map (bandwidth state -> exit/split) '
                       'from bandwidth traces')
    p.add_argument('--traces', nargs='+', required=True, help='t_s,mbps trace CSVs')
    p.add_argument('--deadlines', type=float, nargs='+', metavar='MS',
                   default=[100.0, 200.0, 300.0, 400.0, 600.0, 1000.0],
                   help='deadlines in ms to give a configuration for (default: 100 200 300 '
                        '400 600 1000)')
    p.add_argument('--out', type=Path, default=None,
                   help='map JSON to write (default <user dir>/artifacts/config_map.json; '
                        + USER_DIR_NOTE + ')')
    p.add_argument('--met-target', type=float, default=DEFAULT_MET_TARGET,
                   help='fraction of a state\'s seconds a configuration must meet the deadline')
    p.add_argument('--robot-time-scale', type=float, default=1.0,
                   help='robot layer times x this (as the planner\'s robot_time_scale)')
    _add_artifact_args(p)
    p.set_defaults(func=cmd_build_map)


def add_parsers(sub: Any) -> None:
    """Register the offline subcommands on the ``edgent-ros`` subparsers."""
    s = sub.add_parser('layers', help='print the layer table of the multi-exit model')
    s.add_argument('--exit', type=int, choices=range(1, 6), help='only this exit')
    s.add_argument('--json', action='store_true', help='machine-readable output')
    s.add_argument('--model', type=Path, default=None,
                   help='a model description: print its cut points instead')
    s.set_defaults(func=cmd_layers)

    s = sub.add_parser('train', help='train the 5-exit AlexNet on CIFAR-10',
                       description='Train the five exits jointly and write weights, accuracy '
                       'table and training plot. ' + USER_DIR_NOTE + '. ' + DATA_NOTE)
    s.add_argument('--data-dir', type=Path, default=None, help=DATA_DIR_HELP)
    s.add_argument('--out', type=Path, default=None,
                   help='artifact folder to write (default <user dir>/artifacts)')
    s.add_argument('--epochs', type=int, default=14, help='epochs (default %(default)s)')
    s.add_argument('--batch-size', type=int, default=128,
                   help='training batch size (default %(default)s)')
    s.add_argument('--max-lr', type=float, default=0.1,
                   help='peak learning rate of the one-cycle schedule (default %(default)s)')
    s.add_argument('--seed', type=int, default=0,
                   help='initialisation and shuffling seed (default %(default)s)')
    s.add_argument('--threads', type=int, default=2, help='torch threads (default %(default)s)')
    s.add_argument('--train-limit', type=int, default=None, help='use only N training images')
    s.add_argument('--test-limit', type=int, default=None, help='evaluate on N test images')
    s.add_argument('--no-progress', action='store_true', help='no progress bars')
    s.set_defaults(func=cmd_train)

    s = sub.add_parser('plan', help='print the exit/split decision for a bandwidth and deadline')
    s.add_argument('--bandwidth-mbps', type=float, required=True, help='uplink Mbit/s')
    s.add_argument('--deadline-ms', type=float, required=True, help='latency deadline (ms)')
    s.add_argument('--policy', choices=POLICIES, default='edgent',
                   help='decision rule (default %(default)s; the others are the baselines)')
    s.add_argument('--encodings', nargs='+', default=['raw'], metavar='ENC',
                   help='encodings the edgent policy may choose (raw fp16 int8 int8-zlib '
                   'compressed png jpeg); default raw = the paper\'s')
    s.add_argument('--confidence-threshold', type=float, default=0.0,
                   help='plan for BranchyNet early exit at this entropy threshold (nats)')
    s.add_argument('--robot-time-scale', type=float, default=1.0,
                   help='robot layer times x this (a slower robot class; the sweep uses 60)')
    s.add_argument('--json', action='store_true', help='machine-readable output')
    _add_artifact_args(s)
    model_cli.add_model_plan_args(s)
    s.set_defaults(func=cmd_plan)

    s = sub.add_parser('info', help='print the model, accuracy table and latency-model errors')
    s.add_argument('--json', action='store_true', help='machine-readable output')
    _add_artifact_args(s)
    s.set_defaults(func=cmd_info)

    model_cli.add_parsers(sub)
    add_profile_parser(sub)
    add_fit_parser(sub)
    add_profile_batch_parser(sub)
    add_accuracy_parser(sub)
    add_train_bottleneck_parser(sub)
    add_build_map_parser(sub)
