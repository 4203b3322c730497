"""``edgent-ros testbed`` and ``edgent-ros sweep``: the evaluation on the shaped link (root)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import signal
import sys

from ..evaluation.sweep import (check_targets, DEFAULT_BANDWIDTHS_MBPS, DEFAULT_DEADLINES_MS,
                                DEFAULT_ROBOT_SCALE, encoding_gain, LIVE_POLICIES,
                                LOSSY_ONLY_POLICIES, read_rows, TRACE_POLICIES)
from ..core.paths import DATA_ENV, find_data, HOME_ENV, results_out
from ..evaluation.paired import PAIRED_BANDWIDTHS_MBPS, PAIRED_DEADLINES_MS, PAIRED_POLICIES
from ..evaluation.heldout import HELDOUT_POLICIES
from ..evaluation.heldout_session import (FRAMES_FILE, plan_heldout, report_heldout, run_heldout,
                                          run_simulate, run_tune, SIM_FILE, sim_markdown,
                                          TUNE_FILE)
from ..evaluation.chaos import DEFAULT_TRACE, run_soak
from ..evaluation.lossy_session import run_lossy, write_summary
from ..evaluation.paired_report import build
from ..evaluation.emulated_camera import DEFAULT_PACING, PACINGS
from ..evaluation.paired_session import (CALIBRATION_ATTEMPTS, CALIBRATION_FILE,
                                         CALIBRATION_FRAMES, calibrate_robot,
                                         calibration_factor, calibration_latency,
                                         calibration_spread, run_paired, SPREADS_OF)
from ..evaluation.sweep_session import (build_default_map, make_plots, map_traces, run_sweep,
                                        run_traces, TRACE_DEADLINE_MS, TRACES_PLAN_FILE,
                                        write_oracle)
from ..evaluation.testbed import (DEFAULT_NAME, DEFAULT_QUEUE_BYTES, DEFAULT_ROBOT_PERIOD_US,
                                  DEFAULT_ROBOT_QUOTA, Testbed, TracePlayer, unavailable_reason)
from ..offline.hosts import cgroup_procs_path


def _robot_period_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument('--robot-period-us', type=int, default=DEFAULT_ROBOT_PERIOD_US,
                   metavar='US', help='the robot cgroup\'s CFS period in us (its quota stays '
                   'the same share of one CPU; default %(default)s). The CFS throttles the robot '
                   'in steps of one period: 10000 makes its frame times nearly continuous, where '
                   'the default 100 ms period rounds them by up to one period')
    p.add_argument('--robot-pacing', choices=PACINGS, default=DEFAULT_PACING,
                   help='how the emulated robot is paced (camera compute_pacing): add = wait '
                   '(f - 1) x the layers\' CPU time after them, a quota throttle inside them '
                   'on top (default, every run before total); total = until they took f x '
                   'their CPU time in all, such a throttle absorbed; warm = add, the layers '
                   'run twice per frame and the second pass timed (a host core that idled '
                   'starts cold; f x that cold start is no robot\'s work)')


def _testbed_from_args(args: argparse.Namespace) -> Testbed:
    return Testbed(name=args.name, rate_mbps=getattr(args, 'rate_mbps', 10.0),
                   robot_quota=None if getattr(args, 'no_cgroup', False)
                   else getattr(args, 'quota', DEFAULT_ROBOT_QUOTA),
                   queue_bytes=getattr(args, 'queue_bytes', DEFAULT_QUEUE_BYTES),
                   shape_downlink=getattr(args, 'shape_downlink', False),
                   relay=getattr(args, 'relay', False))


def cmd_testbed(args: argparse.Namespace) -> int:
    """Run one ``edgent-ros testbed`` action."""
    tb = _testbed_from_args(args)
    if args.action in ('up', 'rate', 'play', 'impair'):
        reason = unavailable_reason()
        if reason:
            print(f'edgent-ros testbed: {reason}', file=sys.stderr)
            return 1
    if args.action == 'up':
        tb.setup()
        print(f'testbed {tb.name}: {tb.robot_ns} ({tb.robot_ip}) <-> {tb.edge_ns} '
              f'({tb.edge_ip}), uplink {tb.rate_mbps:g} Mbit/s'
              + (f', robot cgroup {tb.cgroup} at {tb.robot_quota:g} CPU'
                 if tb.robot_quota is not None else ''))
        print(f'  run: ip netns exec {tb.robot_ns} <cmd>   (robot CPU: sh -c \'echo $$ > '
              f'{cgroup_procs_path(tb.cgroup)}; exec ip netns exec {tb.robot_ns} '
              '<cmd>\')')
        print('  DDS: export ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET '
              'FASTDDS_DEFAULT_PROFILES_FILE=<repo>/config/fastdds_testbed.xml')
        return 0
    if args.action == 'down':
        removed = tb.teardown(kill=not args.keep_processes)
        print('removed: ' + (', '.join(removed) if removed else 'nothing (not up)'))
        return 0
    if args.action == 'status':
        st = tb.status() if os.geteuid() == 0 else {'error': 'needs root'}
        if args.json:
            print(json.dumps(st, indent=1))
        else:
            for k, v in st.items():
                print(f'{k}: {v}')
        return 0
    if not tb.exists()['robot_ns']:
        print(f'edgent-ros testbed: {tb.robot_ns} does not exist; run `edgent-ros testbed up` '
              'first', file=sys.stderr)
        return 1
    if args.action == 'impair':
        fields = {k: getattr(args, k) for k in ('delay_ms', 'jitter_ms', 'loss', 'burst')
                  if getattr(args, k) is not None}
        if not tb.exists()['link_ns']:
            print(f'edgent-ros testbed: {tb.name} has no relay; bring it up with '
                  '`edgent-ros testbed up --relay`', file=sys.stderr)
            return 1
        tb.relay = True
        try:
            st = (tb.set_impairment(seed=args.seed, **fields) if args.direction == 'both' else
                  tb.set_impairment(seed=args.seed, **{args.direction: fields}))
        except (ValueError, OSError) as exc:
            print(f'edgent-ros testbed: {exc}', file=sys.stderr)
            return 2
        for d in ('up', 'down'):
            print(f'{d}: {st[d]["configured"]}')
        return 0
    if args.action == 'rate':
        tb.set_rate(args.mbps)
        print(f'uplink rate {args.mbps:g} Mbit/s' + (' (outage)' if args.mbps == 0 else ''))
        return 0
    # play
    player = TracePlayer.from_csv(args.trace, loop=not args.no_loop, speed=args.speed,
                                  scale=args.scale, max_mbps=args.max_mbps)
    duration = args.duration_s or (player.duration_s / player.speed)

    def step(wall: float, mbps: float) -> None:
        print(f'{wall:8.1f} s  {mbps:8.3f} Mbit/s' + ('  (outage)' if mbps == 0 else ''),
              flush=True)
    try:
        n = player.play(tb.set_rate, duration, on_step=None if args.quiet else step)
    except KeyboardInterrupt:
        return 130
    print(f'played {n} rate changes over {duration:g} s', file=sys.stderr)
    return 0


def add_testbed_parser(subparsers) -> None:
    """Register ``edgent-ros testbed up|down|status|rate MBPS|play TRACE``."""
    p = subparsers.add_parser('testbed', help='robot/edge network namespaces with a shaped link '
                              '(root)')
    _add_actions(p)


def _add_actions(p: argparse.ArgumentParser) -> None:
    acts = p.add_subparsers(dest='action', required=True, metavar='ACTION',
                            help='what to do with the testbed')

    def common(s: argparse.ArgumentParser) -> None:
        s.add_argument('--name', default=DEFAULT_NAME,
                       help='testbed name: namespaces NAME_robot/NAME_edge (default edgent)')
        s.set_defaults(func=cmd_testbed)

    s = acts.add_parser('up', help='create namespaces, veth pair, shaper and robot cgroup')
    common(s)
    s.add_argument('--rate-mbps', type=float, default=10.0, help='uplink rate (Mbit/s)')
    s.add_argument('--quota', type=float, default=DEFAULT_ROBOT_QUOTA,
                   help='robot CPU quota, fraction of one CPU (default 0.25)')
    s.add_argument('--no-cgroup', action='store_true', help='no robot CPU cgroup')
    s.add_argument('--queue-bytes', type=int, default=DEFAULT_QUEUE_BYTES,
                   help='shaper queue limit in bytes (default 4 MiB)')
    s.add_argument('--shape-downlink', action='store_true',
                   help='shape edge->robot at the same rate too')
    s.add_argument('--relay', action='store_true', help='join robot and edge through a '
                   'user-space relay (namespace NAME_link) that can add delay and loss '
                   '(testbed impair)')
    s = acts.add_parser('impair', help='set one-way delay, jitter and loss of a testbed brought '
                        'up with --relay (both directions, or --up/--down only)')
    common(s)
    s.add_argument('--delay-ms', type=float, default=None, help='one-way delay (ms)')
    s.add_argument('--jitter-ms', type=float, default=None,
                   help='standard deviation of a half-normal extra delay per packet (ms)')
    s.add_argument('--loss', type=float, default=None, help='share of packets lost, 0..1')
    s.add_argument('--burst', type=float, default=None,
                   help='mean length of a loss burst in packets (1 = independent losses)')
    s.add_argument('--seed', type=int, default=None, help='restart the loss process')
    s.add_argument('--direction', choices=('both', 'up', 'down'), default='both',
                   help='up = robot -> edge, down = edge -> robot (default both)')
    s = acts.add_parser('down', help='remove everything of the testbed (also after a crash)')
    common(s)
    s.add_argument('--keep-processes', action='store_true',
                   help='do not kill processes still inside the namespaces')
    s = acts.add_parser('status', help='what exists, qdiscs, counters')
    common(s)
    s.add_argument('--json', action='store_true', help='machine-readable output')
    s = acts.add_parser('rate', help='set the uplink rate (0 = outage)')
    common(s)
    s.add_argument('mbps', type=float, help='new uplink rate in Mbit/s (0 = outage)')
    s.add_argument('--shape-downlink', action='store_true',
                   help='the testbed was brought up with --shape-downlink')
    s = acts.add_parser('play', help='replay a bandwidth trace CSV (t_s,mbps) on the uplink')
    common(s)
    s.add_argument('trace', type=Path, help='trace CSV with columns t_s,mbps')
    s.add_argument('--speed', type=float, default=1.0, help='trace seconds per wall second')
    s.add_argument('--scale', type=float, default=1.0, help='multiply every rate')
    s.add_argument('--max-mbps', type=float, default=None, help='cap every rate')
    s.add_argument('--duration-s', type=float, default=None,
                   help='wall seconds to play (default: the trace once)')
    s.add_argument('--no-loop', action='store_true', help='hold the last rate at the end')
    s.add_argument('--quiet', action='store_true', help='no line per rate change')
    s.add_argument('--shape-downlink', action='store_true',
                   help='the testbed was brought up with --shape-downlink')


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f'signal {signum}')


def cmd_sweep(args: argparse.Namespace) -> int:
    """``edgent-ros sweep run|traces|plot``."""
    # SIGTERM, and SIGINT even where a background start ignored it, stop the run through the
    # finally blocks: nodes stopped, testbed removed, the results CSV keeps every finished cell
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        return _sweep_action(args)
    except KeyboardInterrupt as exc:
        print(f'edgent-ros sweep: interrupted ({exc}); the results files keep every finished '
              'cell: rerun the same command to resume', file=sys.stderr)
        return 130


def _results(args: argparse.Namespace) -> Path:
    """Return ``--results`` or ``<user dir>/results`` (``core.paths``)."""
    return Path(args.results) if args.results else results_out()


def _sweep_action(args: argparse.Namespace) -> int:
    if args.action == 'tune':
        trace_dir = find_data('traces', args.traces_dir, option='--traces-dir')
        res = _results(args) / 'heldout'
        body = run_tune(res, trace_dir, args.robot_scale, args.deadline_ms)
        print(json.dumps({k: body[k] for k in ('chosen', 'score', 'folds', 'tune_traces',
                                               'held_out_traces')}, indent=1))
        print(f'written: {res / TUNE_FILE} ({len(body["table"])} settings scored)')
        rows = run_simulate(res, trace_dir, args.robot_scale, args.deadline_ms)
        print(sim_markdown(rows))
        print(f'written: {res / SIM_FILE} (every policy simulated on the held-back traces)')
        return 0
    if args.action == 'heldout-report':
        res = _results(args) / 'heldout'
        if not (res / FRAMES_FILE).is_file():
            print(f'edgent-ros sweep: no held-out results in {res} (run: edgent-ros sweep '
                  'heldout)', file=sys.stderr)
            return 2
        rep = report_heldout(res, args.robot_scale)
        print(json.dumps(rep, indent=1))
        print(f'files: {res}/heldout_summary.csv, heldout_claims.json, heldout.png')
        return 0
    if args.action == 'paired-report':
        res = _results(args) / 'paired'
        if not (res / 'paired_frames.csv').is_file():
            print(f'edgent-ros sweep: no paired results in {res} (run: edgent-ros sweep paired)',
                  file=sys.stderr)
            return 2
        rep = build(res, robot_scale=args.robot_scale)
        print((res / 'paired_report.md').read_text())
        print(f'files: {res}/paired_summary.csv, paired_claims.json, paired_report.md, '
              f'paired_vs_deadline.png, paired_vs_bandwidth.png ({len(rep["summary"])} rows)')
        return 0
    if args.action == 'plot':
        res = _results(args)
        if (res / 'sweep.csv').exists():
            write_oracle(res / 'sweep.csv', res / 'sweep_frames.csv')
        for p in make_plots(res):
            print(p)
        sweep_csv = res / 'sweep.csv'
        if sweep_csv.exists():
            rows = read_rows(sweep_csv)
            print(json.dumps(check_targets(rows), indent=1))
            print(json.dumps({'encoding_gain': encoding_gain(rows)}, indent=1))
        return 0
    if args.action in ('traces', 'heldout', 'soak'):   # a missing data set: before root
        trace_dir = find_data('traces', args.traces_dir, option='--traces-dir')
    reason = unavailable_reason()
    if reason:
        print(f'edgent-ros sweep: {reason}', file=sys.stderr)
        return 1
    if args.action == 'soak':
        res = _results(args) / 'soak'
        try:
            body = run_soak(res, args.duration_s, args.seed, args.trace, args.deadline_ms,
                            args.robot_scale, args.mean_gap_s, trace_dir=trace_dir)
        except (ValueError, OSError) as exc:
            print(f'edgent-ros sweep: {exc}', file=sys.stderr)
            return 2
        print(f'{len(body["events"])} events, {len(body["runs"])} camera runs; every frame '
              f'accounted for: {body["all_accounted"]}; crashes: {len(body["crashes"])}; '
              f'processes left: {len(body["leftover_processes"])}; results in {res}')
        return 0 if body['all_accounted'] and not body['leftover_processes'] else 1
    if args.action == 'lossy':
        res = _results(args) / 'lossy'
        try:
            n = run_lossy(res, args.bandwidths, args.delays, args.losses, args.deadline_ms,
                          args.policies, args.frames, robot_scale=args.robot_scale,
                          seed=args.seed, fresh=args.fresh, reps=args.reps)
        except (ValueError, OSError) as exc:
            print(f'edgent-ros sweep: {exc}', file=sys.stderr)
            return 2
        body = write_summary(res)
        print(f'{n} runs; results in {res}/lossy.csv, lossy_frames.csv, lossy_summary.json '
              f'(every frame accounted for: {body["all_accounted"]})')
        return 0
    if args.action == 'heldout':
        res = _results(args) / 'heldout'
        try:
            n = run_heldout(res, trace_dir, args.robot_scale, args.deadline_ms,
                            args.policies or list(HELDOUT_POLICIES), reps=args.reps,
                            n_traces=args.traces, seed=args.seed, fresh=args.fresh)
        except (ValueError, OSError) as exc:
            print(f'edgent-ros sweep: {exc}', file=sys.stderr)
            return 2
        print(f'{n} cells run; results in {res} (report: edgent-ros sweep heldout-report)')
        return 0
    if args.action == 'calibrate-robot':
        res = _results(args) / 'paired'
        try:
            body = calibrate_robot(res, robot_scale=args.robot_scale, frames=args.frames,
                                   model=args.model, refit=args.refit,
                                   robot_period_us=args.robot_period_us,
                                   robot_pacing=args.robot_pacing,
                                   warmup_frames=args.warmup_frames,
                                   steady_within=(None if args.steady_within is None
                                                  else args.steady_within / 100.0),
                                   attempts=args.attempts)
        except ValueError as exc:
            print(f'edgent-ros sweep: {exc}', file=sys.stderr)
            return 2
        print(json.dumps(body, indent=1))
        print(f'written: {res / CALIBRATION_FILE} (use: sweep paired --robot-calibration)')
        return 0
    if args.action == 'paired':
        res = _results(args) / 'paired'
        try:
            factor, spread = 1.0, None
            if args.robot_spread and not args.robot_calibration:
                raise ValueError('--robot-spread needs --robot-calibration')
            robot = (args.robot_scale, args.model, args.robot_period_us, args.robot_pacing)
            if args.robot_calibration:
                factor = calibration_factor(args.robot_calibration, *robot)
                if json.loads(Path(args.robot_calibration).read_text()).get('steady') is False:
                    print(f'edgent-ros sweep: warning: {args.robot_calibration} is unsteady '
                          '(its rounds disagree beyond its --steady-within): the host changed '
                          'speed under it', file=sys.stderr)
            if args.robot_latency and not args.robot_calibration:
                raise ValueError('--robot-latency needs --robot-calibration')
            if args.robot_spread == 'blocks' and not args.robot_latency:
                raise ValueError('--robot-spread blocks needs --robot-latency (the spread '
                                 'around the block times the planner plans)')
            latency = (calibration_latency(args.robot_calibration, *robot)
                       if args.robot_latency else None)
            if args.robot_spread:
                spread = calibration_spread(args.robot_calibration, *robot,
                                            of=args.robot_spread)
            n = run_paired(res, args.bandwidths, args.deadlines, args.policies,
                           frames=args.frames, reps=args.reps,
                           config_frames=args.config_frames, seed=args.seed,
                           robot_scale=args.robot_scale, fresh=args.fresh, robot_factor=factor,
                           redo_configs=args.redo_configs, model=args.model,
                           link_burst=args.link_burst, robot_spread=spread,
                           robot_latency=latency, robot_period_us=args.robot_period_us,
                           robot_pacing=args.robot_pacing)
        except (ValueError, OSError, KeyError) as exc:
            print(f'edgent-ros sweep: {exc}', file=sys.stderr)
            return 2
        print(f'{n} cells run; results in {res} (report: edgent-ros sweep paired-report)')
        return 0
    if args.action == 'run':
        bws = args.bandwidths or list(DEFAULT_BANDWIDTHS_MBPS)
        dls = args.deadlines or list(DEFAULT_DEADLINES_MS)
        pols = args.policies or list(LIVE_POLICIES)
        if args.smoke:
            bws, dls = [0.1, 5.0], [300.0]
            pols = ['device-only', 'edge-only', 'edgent', 'true-bandwidth', 'edgent+enc']
        out = Path(args.out) if args.out else results_out('sweep.csv')
        try:
            n = run_sweep(out, bws, dls, pols, 4 if args.smoke else args.frames,
                          robot_scale=args.robot_scale, fresh=args.fresh,
                          frames_csv=Path(args.frames_csv) if args.frames_csv else None,
                          model=args.model)
        except (ValueError, OSError) as exc:
            print(f'edgent-ros sweep: {exc}', file=sys.stderr)
            return 2
        print(f'{n} cells run; results in {out}')
        return 0
    res = _results(args)
    if args.trace:
        traces = [(t, args.start_s, args.duration_s) for t in args.trace]
    else:   # the report's windows: issue 18 item 7's rule, fixed before any run
        plan = plan_heldout(trace_dir, args.robot_scale, args.deadline_ms)
        traces = [(w['trace'], w['start_s'], plan['window_s']) for w in plan['live']]
        res.mkdir(parents=True, exist_ok=True)
        (res / TRACES_PLAN_FILE).write_text(json.dumps(plan, indent=1) + '\n')
        print('windows chosen by the held-out rule (heldout.choose_live): ' + ', '.join(
            f'{t} from {s:g} s' for t, s, _ in traces), file=sys.stderr)
    policies = args.policies or list(TRACE_POLICIES)
    map_path = Path(args.map) if args.map else res / 'config_map.json'
    if 'edgent-map' in policies:
        replayed = [t for t, _, _ in traces]
        try:
            leak = sorted(set(map_traces(map_path)) & set(replayed)) if map_path.is_file() \
                else []
        except ValueError as exc:
            print(f'edgent-ros sweep: {exc}', file=sys.stderr)
            return 2
        if leak and args.map:
            print(f'edgent-ros sweep: {map_path} was built from {", ".join(leak)}, which this '
                  'run replays; build a map without them (edgent-ros build-map) or leave out '
                  '--map', file=sys.stderr)
            return 2
        if leak or not map_path.is_file():
            if leak:
                print(f'{map_path} was built from {", ".join(leak)}, replayed now: building it '
                      'again without them', file=sys.stderr)
            build_default_map(map_path, args.robot_scale, replayed, trace_dir=trace_dir)
    rows = run_traces(res, traces, policies, deadline_ms=args.deadline_ms,
                      robot_scale=args.robot_scale, trace_dir=trace_dir, map_path=map_path)
    print(f'{len(rows)} trace runs; results in {res / "traces.csv"}')
    return 0


SWEEP_NOTE = (f'Results go to <user dir>/results unless a path is given; <user dir> is '
              f'${HOME_ENV}, else $XDG_DATA_HOME/edgent_ros, else ~/.local/share/edgent_ros.')
RESULTS_HELP = ('results folder: sweep.csv, sweep_frames.csv, traces.csv, plots (default '
                '<user dir>/results)')


def _robot_scale_arg(p: argparse.ArgumentParser, what: str = '') -> None:
    """Add ``--robot-scale`` (the testbed's robot class) to a sweep subcommand."""
    p.add_argument('--robot-scale', type=float, default=DEFAULT_ROBOT_SCALE,
                   help=what or 'robot this many times slower than the profiled one '
                                '(default %(default)s)')


def add_sweep_parser(sub) -> None:
    """Register ``edgent-ros sweep``."""
    p = sub.add_parser('sweep', help='evaluation on the link testbed: run | traces | plot | '
                       'paired | paired-report (root)', description=SWEEP_NOTE)
    acts = p.add_subparsers(dest='action', required=True, metavar='ACTION',
                            help='run, traces, plot, paired, paired-report, calibrate-robot, '
                                 'tune, heldout, heldout-report, lossy or soak')
    r = acts.add_parser('run', help='static bandwidth x deadline x policy sweep (resumable)',
                        description=SWEEP_NOTE)
    r.add_argument('--out', default=None,
                   help='results CSV, appended to and resumed (default <user dir>/results/'
                        'sweep.csv)')
    r.add_argument('--bandwidths', type=float, nargs='+', metavar='MBPS',
                   help='uplink rates in Mbit/s (default: '
                        f'{" ".join(f"{b:g}" for b in DEFAULT_BANDWIDTHS_MBPS)})')
    r.add_argument('--deadlines', type=float, nargs='+', metavar='MS',
                   help='deadlines in ms (default: '
                        f'{" ".join(f"{d:g}" for d in DEFAULT_DEADLINES_MS)})')
    r.add_argument('--policies', nargs='+', choices=LIVE_POLICIES,
                   help='policies to run (default: all of them)')
    r.add_argument('--frames', type=int, default=20, help='frames per cell')
    _robot_scale_arg(r)
    r.add_argument('--smoke', action='store_true', help='2 bandwidths x 1 deadline x 5 '
                   'policies x 4 frames')
    r.add_argument('--frames-csv', default=None, help='per-frame rows (default: '
                   '<out>_frames.csv)')
    r.add_argument('--fresh', action='store_true', help='start over (delete the results CSV)')
    r.add_argument('--model', type=Path, default=None,
                   help='a model description: camera, edge and planner run it (its table, '
                        'block times and accuracy beside it; edgent+enc/+bn: the encodings '
                        'train-bottleneck --model measured); default the AlexNet')
    t = acts.add_parser('traces', help='trace replays, one policy after the other',
                        description=SWEEP_NOTE)
    t.add_argument('--results', default=None, help=RESULTS_HELP)
    t.add_argument('--traces-dir', type=Path, default=None,
                   help=f'folder of the trace CSVs (default: ${DATA_ENV}/traces, else '
                        '<user dir>/data/traces, then ../shared/data/traces beside a source '
                        'checkout)')
    t.add_argument('--trace', nargs='+', help='trace file names in the traces folder '
                   '(default: the report\'s windows, chosen by the held-out rule: the 3 '
                   'held-back traces whose first 60 s window with a change of the '
                   'true-bandwidth decision has the most changes; written to '
                   f'<results>/{TRACES_PLAN_FILE})')
    t.add_argument('--start-s', type=float, default=0.0,
                   help='with --trace: first trace second replayed (default %(default)s)')
    t.add_argument('--duration-s', type=float, default=60.0,
                   help='with --trace: seconds replayed per trace (default %(default)s)')
    t.add_argument('--deadline-ms', type=float, default=TRACE_DEADLINE_MS,
                   help='deadline in ms (default %(default)s)')
    t.add_argument('--policies', nargs='+', choices=TRACE_POLICIES,
                   help='policies to replay (default: all of them)')
    t.add_argument('--map', default=None,
                   help='configuration map for edgent-map (default <results>/config_map.json; '
                        'built from the traces not replayed when missing)')
    _robot_scale_arg(t)
    pa = acts.add_parser('paired', help='paired, repeated sweep with an exhaustive oracle: '
                         'every policy on the same frames from the same start state, shuffled '
                         'order, the configurations each oracle needs measured (resumable)',
                         description=SWEEP_NOTE)
    pa.add_argument('--results', default=None, help='results folder; files go to its paired/ '
                    '(default <user dir>/results)')
    pa.add_argument('--bandwidths', type=float, nargs='+', metavar='MBPS',
                    default=list(PAIRED_BANDWIDTHS_MBPS),
                    help='uplink rates in Mbit/s (default: %(default)s)')
    pa.add_argument('--deadlines', type=float, nargs='+', metavar='MS',
                    default=list(PAIRED_DEADLINES_MS), help='deadlines in ms (default: '
                    '%(default)s)')
    pa.add_argument('--policies', nargs='+', choices=LIVE_POLICIES,
                    default=list(PAIRED_POLICIES), help='policies (default: %(default)s)')
    pa.add_argument('--frames', type=int, default=20, help='frames per policy cell and '
                    'repetition (default %(default)s)')
    pa.add_argument('--reps', type=int, default=3, help='repetitions (default %(default)s)')
    pa.add_argument('--config-frames', type=int, default=30, help='frames per measured '
                    'configuration, at most (default %(default)s)')
    pa.add_argument('--seed', type=int, default=0, help='seed of the policy order '
                    '(default %(default)s)')
    _robot_scale_arg(pa)
    pa.add_argument('--fresh', action='store_true', help='start over (delete the paired '
                    'results)')
    pa.add_argument('--model', type=Path, default=None,
                    help='a model description or shipped name (e.g. resnet64): camera, edge and '
                         'planner run it (edgent+enc/+bn: its measured encodings, and the oracle '
                         'measures those configurations too); default the AlexNet')
    pa.add_argument('--redo-configs', action='store_true', help='measure the oracle\'s '
                    'configurations again (their rows are replaced; policy cells kept)')
    pa.add_argument('--link-burst', action='store_true', help='tell the planner the '
                    'shaper\'s burst (planner parameter link_burst_bytes = the testbed\'s tbf '
                    'burst): a message smaller than it is planned as crossing at once')
    pa.add_argument('--robot-calibration', default=None, metavar='JSON',
                    help='robot_calibration.json of sweep calibrate-robot: the planner models '
                         'the robot as robot scale x its factor (default: not applied)')
    pa.add_argument('--robot-latency', action='store_true', help='with --robot-calibration: '
                    'planner and camera plan the robot\'s times measured there through the '
                    'emulation (its robot_latency.json) instead of the profile x the factor')
    pa.add_argument('--robot-spread', nargs='?', const='exits', choices=SPREADS_OF,
                    default=None, help='with --robot-calibration: the planner also plans the '
                    'spread measured there (planner parameter robot_time_spread) until a '
                    'cell\'s own robot frames are measured. exits (the default value): around '
                    'the profile x the factor, device-only frames of every exit pooled; '
                    'blocks (needs --robot-latency): every frame around the block times '
                    'measured there, the model such a planner plans')
    _robot_period_arg(pa)
    cr = acts.add_parser('calibrate-robot', help='measure the testbed robot device-only per '
                         'exit (live / modelled robot time) and at every split (its latency '
                         'file, robot_latency.json) (root)', description=SWEEP_NOTE)
    cr.add_argument('--results', default=None, help='results folder; writes its paired/'
                    'robot_calibration.json (default <user dir>/results)')
    cr.add_argument('--frames', type=int, default=CALIBRATION_FRAMES,
                    help='frames per exit (default %(default)s: with 4 exits the slowest of '
                    '300 frames bounds the 99th percentile the planner plans for)')
    cr.add_argument('--model', type=Path, default=None,
                    help='a model description or shipped name (e.g. resnet64); default the '
                         'AlexNet. sweep paired --robot-calibration refuses the file for '
                         'another model. The model also runs at every split: the robot\'s '
                         'times so measured go to robot_latency.json (sweep paired '
                         '--robot-latency)')
    cr.add_argument('--refit', action='store_true', help='run nothing: fit robot_calibration'
                    '.json and robot_latency.json again from the frames the folder holds (no '
                    'root; the period and pacing they were measured at are kept)')
    cr.add_argument('--warmup-frames', type=int, default=0,
                    help='first run every configuration this many frames, not fitted (the '
                    'first minutes of a calibration are its noisiest; default %(default)s)')
    cr.add_argument('--steady-within', type=float, default=None, metavar='PCT',
                    help='run the calibration again (up to --attempts in all) while its 3 '
                    'rounds\' device-only medians are more than PCT %% apart: the host changed '
                    'speed under it. Default: no check (round_spread is recorded anyway)')
    cr.add_argument('--attempts', type=int, default=CALIBRATION_ATTEMPTS,
                    help='calibrations at most with --steady-within (default %(default)s); '
                    'the last one is fitted, every attempt\'s frames are kept (rep)')
    _robot_period_arg(cr)
    _robot_scale_arg(cr)
    pr = acts.add_parser('paired-report', help='tables, intervals, claims and PNGs of the '
                         'paired sweep (no root)', description=SWEEP_NOTE)
    pr.add_argument('--results', default=None, help='results folder whose paired/ is read '
                    '(default <user dir>/results)')
    _robot_scale_arg(pr, 'robot scale the sweep ran with when it left no paired_meta.json '
                         '(default %(default)s)')
    tu = acts.add_parser('tune', help='choose the estimator and hysteresis settings by '
                         'cross-validation on the tuning half of the traces, in simulation, '
                         'then simulate every policy on the held-back half (no root)',
                         description=SWEEP_NOTE)
    ho = acts.add_parser('heldout', help='replay windows of the held-back half of the traces '
                         'live: paired, repeated, shuffled (root; resumable)',
                         description=SWEEP_NOTE)
    hr = acts.add_parser('heldout-report', help='table, claims and PNG of sweep heldout (no '
                         'root)', description=SWEEP_NOTE)
    for q in (tu, ho, hr):
        q.add_argument('--results', default=None, help='results folder whose heldout/ is '
                       'written (default <user dir>/results)')
        _robot_scale_arg(q)
    for q in (tu, ho):
        q.add_argument('--traces-dir', default=None, help='folder of the trace CSVs (default: '
                       'the data set traces/)')
        q.add_argument('--deadline-ms', type=float, default=TRACE_DEADLINE_MS,
                       help='deadline in ms (default %(default)s)')
    ho.add_argument('--policies', nargs='+', choices=HELDOUT_POLICIES, default=None,
                    help='policies (default: all of them)')
    ho.add_argument('--reps', type=int, default=3, help='repetitions (default %(default)s)')
    ho.add_argument('--fresh', action='store_true', help='replay every cell again (delete '
                    'heldout_frames.csv; the tuning stays)')
    ho.add_argument('--traces', type=int, default=3, help='held-back traces replayed, chosen '
                    'by the pre-written rule (default %(default)s)')
    ho.add_argument('--seed', type=int, default=0, help='policy order seed (default '
                    '%(default)s)')
    lo = acts.add_parser('lossy', help='Edgent on a link that delays and loses packets (the '
                         'testbed relay): bandwidth x one-way delay x loss x policy, same frames '
                         'and start state per cell (root; resumable)', description=SWEEP_NOTE)
    lo.add_argument('--results', default=None, help='results folder whose lossy/ is written '
                    '(default <user dir>/results)')
    lo.add_argument('--bandwidths', type=float, nargs='+', default=[0.5, 2.0], metavar='MBPS',
                    help='uplink rates (default %(default)s)')
    lo.add_argument('--delays', type=float, nargs='+', default=[20.0, 100.0], metavar='MS',
                    help='one-way delay, both directions (default %(default)s)')
    lo.add_argument('--losses', type=float, nargs='+', default=[0.0, 0.01, 0.05, 0.1],
                    metavar='P', help='packet loss, both directions (default %(default)s)')
    lo.add_argument('--deadline-ms', type=float, default=400.0,
                    help='deadline in ms (default %(default)s)')
    lo.add_argument('--policies', nargs='+', choices=LIVE_POLICIES + LOSSY_ONLY_POLICIES,
                    default=['edgent', 'edge-only', 'exit-only'],
                    help='policies (default %(default)s)')
    lo.add_argument('--frames', type=int, default=30, help='frames per run (default 30)')
    lo.add_argument('--seed', type=int, default=0, help='loss and order seed (default 0)')
    lo.add_argument('--reps', type=int, default=3, help='repetitions (default %(default)s)')
    lo.add_argument('--fresh', action='store_true', help='start over')
    _robot_scale_arg(lo)
    so = acts.add_parser('soak', help='chaos soak: a long trace replay with seeded kills and '
                         'restarts of edge, planner and camera and link cuts; checks every '
                         'frame accounted for, memory, processes (root)', description=SWEEP_NOTE)
    so.add_argument('--results', default=None, help='results folder whose soak/ is written '
                    '(default <user dir>/results)')
    so.add_argument('--duration-s', type=float, default=600.0,
                    help='replay length in s (default %(default)s)')
    so.add_argument('--seed', type=int, default=0, help='event schedule seed (default 0)')
    so.add_argument('--mean-gap-s', type=float, default=35.0,
                    help='mean time between events in s (default %(default)s)')
    so.add_argument('--trace', default=DEFAULT_TRACE, help='trace file in the traces folder '
                    '(default %(default)s)')
    so.add_argument('--traces-dir', default=None, help='traces folder (default: the bundled '
                    'data\'s)')
    so.add_argument('--deadline-ms', type=float, default=300.0,
                    help='deadline in ms (default %(default)s)')
    _robot_scale_arg(so)
    pl = acts.add_parser('plot', help='draw the PNGs and check the targets',
                         description=SWEEP_NOTE)
    pl.add_argument('--results', default=None, help=RESULTS_HELP)
    p.set_defaults(func=cmd_sweep)


def add_parsers(sub) -> None:
    """Register ``testbed`` and ``sweep`` on the ``edgent-ros`` subparsers."""
    add_testbed_parser(sub)
    add_sweep_parser(sub)
