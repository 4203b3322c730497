"""
``edgent-ros sweep paired``: the paired, repeated sweep with an exhaustive oracle (root).

For each bandwidth the real nodes start once on the testbed (``sweep_session.NodeSession``, the
camera with ``wait_for_link``: every frame of the bundled sample in order, none skipped). First
the configurations the oracle needs are measured one by one (``paired.OracleSearch``, planner
policy ``fixed``), then every (deadline, repetition) cell runs each policy in a shuffled order
from the same start state on the same frames (see ``paired``). Rows are appended and flushed as
they finish: a rerun of the same command resumes. ``paired_report`` turns the frames into the
tables, intervals, claims and figures.
"""

from __future__ import annotations

from pathlib import Path
import csv
import json
import os
import statistics
import sys
import time
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from ..core.arch import EXIT_ATTACH
from ..core.artifacts import ARTIFACT_DIR, read_config, save_json
from ..core.chance import check_spread, spread_quantiles as chance_quantiles
from ..core.codec import bottleneck_width
from ..core.latency import LatencyModels
from ..core.model_desc import load_description, resolve
from ..core.model_plan import (LATENCY_FORMAT, load_block_latency, load_table,
                               measured_robot_blocks)
from ..core.optimizer import evaluate
from ..core.planner import parse_fixed
from ..core.validate import as_count
from .paired import (candidates, Config, config_name, OracleSearch, PAIRED_POLICIES,
                     policy_order, WARMUP_FRAMES)
from .sweep import (aggregate, append_rows, bottleneck_encodings, check_grid, CSV_FIELDS,
                    DEFAULT_ROBOT_SCALE, FRAME_FIELDS, in_cell, OK, planner_params, read_rows,
                    run_encodings)
from .sweep_session import (_predictor, NodeSession, planner_problem, TESTBED_NAME,
                            testbed_run)
from ..offline.hosts import cfs_quota_us
from .emulated_camera import check_pacing, DEFAULT_PACING
from .testbed import (DEFAULT_BURST_BYTES, DEFAULT_ROBOT_PERIOD_US, DEFAULT_ROBOT_QUOTA,
                      Testbed)

PAIRED_FIELDS = ('kind', 'rep', 'order', 'frame_index', 'true_class', 'branch_len') + FRAME_FIELDS
CELL_FIELDS = ('kind', 'rep', 'order') + CSV_FIELDS
WARMUP_S = 5.5        # paused, probes only: longer than the estimator's 5 s staleness
CALIBRATION_FILE = 'robot_calibration.json'
ROBOT_LATENCY_FILE = 'robot_latency.json'   # the model's latency file, the robot's measured
PREFIX_FRAMES = 15   # per prefix (calibrate_robot)
CALIBRATION_ROUNDS = 3   # calibrate_robot's frames of a configuration, in this many rounds
CALIBRATION_ATTEMPTS = 3   # calibrate_robot --steady-within: at most this many calibrations
META_FILE = 'paired_meta.json'
SPREAD_QUANTILES = 32   # robot_calibration.json's spread: this many quantiles
# what a calibration's robot-time spread is measured around -> its key in the file
SPREAD_KEYS = {'exits': 'spread', 'blocks': 'spread_blocks'}
SPREADS_OF = tuple(SPREAD_KEYS)
CALIBRATION_FRAMES = 75   # per exit: 300 on a 4-exit model (calibrate_robot)
CONFIG_MEDIAN_FRAMES = 10   # a configuration's median robot time is compared from this many


def config_policy(config: Config) -> str:
    """Return the policy name of a pinned configuration (``fixed:e/s``, ``fixed:e/s/enc``)."""
    return f'fixed:{config_name(config)}'


def config_of(policy: str) -> Config:
    """Return the configuration of a ``config_policy`` name (``fixed:4/7/bn4``: (4, 7, "bn4"))."""
    e, s, enc = parse_fixed(str(policy).split(':', 1)[1])
    return (e, s) if enc == 'raw' else (e, s, enc)


def fixed_params(config: Config) -> Dict[str, object]:
    """Return the planner parameters that pin ``config`` (policy ``fixed``; its encoding)."""
    encs = ['raw'] + [str(x) for x in config[2:] if x != 'raw']
    return {'policy': 'fixed', 'encodings': encs, 'fixed_configuration': config_name(config)}


def drop_kind(path: Path, kind: str) -> int:
    """Remove the rows of ``kind`` from a paired results CSV (text kept as is); return how many."""
    path = Path(path)
    if not path.exists():
        return 0
    with open(path, newline='') as f:
        rows = list(csv.reader(f))
    if not rows:
        return 0
    col = rows[0].index('kind')
    keep = [rows[0]] + [r for r in rows[1:] if r[col] != kind]
    tmp = path.with_suffix('.tmp')
    with open(tmp, 'w', newline='') as f:
        csv.writer(f).writerows(keep)
    tmp.replace(path)
    return len(rows) - len(keep)


def _done(frames_csv: Path) -> Tuple[set, Dict[float, Dict[Config, List[dict]]]]:
    """Return the policy cells already run and the configurations already measured."""
    cells, configs = set(), {}
    if Path(frames_csv).exists():
        for r in read_rows(frames_csv):
            bw = float(r['bandwidth_mbps'])
            if r['kind'] == 'config':
                configs.setdefault(bw, {}).setdefault(config_of(r['policy']), []).append(r)
            else:
                cells.add((str(r['policy']), bw, float(r['deadline_ms']), int(r['rep'])))
    return cells, configs


class _Runner:
    """One bandwidth's node session, running paired cells."""

    def __init__(self, sess: NodeSession, problem, accuracy, bw: float, frames_csv: Path,
                 cells_csv: Optional[Path], warmup_s: float, robot_scale: float):
        self.sess, self.problem, self.accuracy, self.bw = sess, problem, accuracy, bw
        self.frames_csv, self.cells_csv = frames_csv, cells_csv
        self.warmup_s, self.robot_scale = warmup_s, robot_scale
        self.predict = _predictor(problem, bw * 1e6)

    def warm(self, configs: Sequence[Config], frames: int = WARMUP_FRAMES) -> None:
        """Run each configuration for ``frames`` unrecorded frames (layers run once at least)."""
        s = self.sess
        for config in configs:
            s.set_params('camera_node', paused=True)
            idx = len(s.records)
            s.set_planner(deadline_ms=1000.0, **fixed_params(config))
            s.wait_decision('fixed', 1000.0, idx)
            since = time.time()
            s.set_params('camera_node', paused=False)
            s.collect(since, frames, 60.0 + 20.0 * frames)
        s.set_params('camera_node', paused=True)

    def cell(self, kind: str, name: str, params: dict, deadline_ms: float, frames: int,
             rep: int, order: int, stop=None) -> List[dict]:
        """Run one cell from the common start state; append and return its frame rows."""
        s = self.sess
        t0 = time.time()
        s.set_params('camera_node', paused=True)
        idx = len(s.records)
        s.set_planner(calibration=False)
        s.set_planner(deadline_ms=float(deadline_ms), true_bandwidth_bps=float(self.bw * 1e6),
                      calibration=True, **params)
        s.wait_decision(str(params['policy']), deadline_ms, idx)
        time.sleep(self.warmup_s)
        since = time.time()
        s.set_params('camera_node', next_frame=0, paused=False)
        outs, _, _ = s.collect(since, frames, 60.0 + 20.0 * frames, stop=stop)
        s.set_params('camera_node', paused=True)
        decs = s.decisions(str(params['policy']), deadline_ms, idx)
        row, per_frame = aggregate(outs, self.accuracy, self.predict, decs)
        key = {'kind': kind, 'policy': name, 'bandwidth_mbps': self.bw,
               'deadline_ms': deadline_ms, 'rep': rep, 'order': order}
        rows = []
        for k, (f, o) in enumerate(zip(per_frame, [o for o in outs if in_cell(o)])):
            rows.append(dict(f, frame_index=k, true_class=o['true_class_id'],
                             branch_len=self.problem.branch_len(int(f['exit'])), **key))
        row.update(key, robot_scale=self.robot_scale, elapsed_s=round(time.time() - t0, 2))
        append_rows(self.frames_csv, rows, PAIRED_FIELDS)
        if self.cells_csv is not None:
            append_rows(self.cells_csv, [row], CELL_FIELDS)
        return rows


def run_paired(out_dir: Path, bandwidths: Sequence[float], deadlines: Sequence[float],
               policies: Sequence[str] = PAIRED_POLICIES, frames: int = 20, reps: int = 3,
               config_frames: int = 30, seed: int = 0,
               robot_scale: float = DEFAULT_ROBOT_SCALE, warmup_s: float = WARMUP_S,
               fresh: bool = False, name: str = TESTBED_NAME,
               logdir: Optional[Path] = None, robot_factor: float = 1.0,
               redo_configs: bool = False, model: Optional[Path] = None,
               link_burst: bool = False,
               robot_spread: Optional[Sequence[float]] = None,
               robot_latency: Optional[Path] = None,
               robot_period_us: int = DEFAULT_ROBOT_PERIOD_US,
               robot_pacing: str = DEFAULT_PACING) -> int:
    """
    Run every configuration and policy cell not yet in ``out_dir``; return how many ran.

    Files: ``paired_frames.csv`` (every frame: configurations and policies) and
    ``paired_cells.csv`` (one row per cell). Raw tensors (the paper's decision space).
    ``robot_factor``: the planner models the robot as ``robot_scale`` x this (the factor of
    ``calibrate_robot``); the emulated robot stays ``robot_scale``. ``redo_configs``: remove
    the measured configurations first and measure them again (the policy cells stay).
    ``model``: a model description (camera, edge and planner run it; default the AlexNet);
    ``paired_meta.json`` records it with the robot scale for the report. ``link_burst``: the
    planner is told the shaper's burst (planner parameter ``link_burst_bytes``, the testbed's
    ``burst_bytes``), so that a payload smaller than it is planned as crossing at once.
    With ``link_burst`` the camera also holds a capture after a probe pair until the shaper's
    bucket has refilled (camera ``probe_settle_s`` = burst bits / rate): the pair spends the
    burst, and the planner plans it as there.
    ``robot_spread``: the robot-time spread of a ``calibrate_robot`` file (planner parameter
    ``robot_time_spread``), planned until the cell's own robot frames are measured.
    ``robot_latency``: a described model's block times with the robot's measured through the
    emulation (``calibrate_robot``'s ``robot_latency.json``, in units of ``robot_scale`` x
    ``robot_factor``): planner and camera fallback plan with it (``latency_models_path``).
    ``robot_period_us``: the robot cgroup's CFS period (its quota stays the testbed's share of
    one CPU per period); ``robot_pacing``: the emulated camera's ``compute_pacing``
    (``evaluation.emulated_camera``); ``paired_meta.json`` records both.
    """
    check_grid(bandwidths, deadlines, policies)
    cfs_quota_us(DEFAULT_ROBOT_QUOTA, robot_period_us)   # a bad period, before anything runs
    check_pacing(robot_pacing)
    if frames < 1 or reps < 1 or config_frames < 1:
        raise ValueError(f'frames, reps and config_frames must be >= 1, got {frames}, {reps}, '
                         f'{config_frames}')
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frames_csv, cells_csv = out_dir / 'paired_frames.csv', out_dir / 'paired_cells.csv'
    if fresh:
        for p in (frames_csv, cells_csv):
            p.unlink(missing_ok=True)
    if redo_configs:
        for p in (frames_csv, cells_csv):
            drop_kind(p, 'config')
    done_cells, done_configs = _done(frames_csv)
    todo = [(bw, dl, r, p) for bw in bandwidths for r in range(1, reps + 1) for dl in deadlines
            for p in policy_order(policies, bw, dl, r, seed)
            if (p, float(bw), float(dl), r) not in done_cells]
    print(f'sweep paired: {len(todo)} policy cells to run ({len(done_cells)} done) at '
          f'{len(bandwidths)} bandwidths, then the configurations each oracle needs; '
          f'{frames} frames per cell, up to {config_frames} per configuration', file=sys.stderr)
    model_scale = robot_scale * float(robot_factor)
    # every encoding a policy may send (edgent+enc/+bn), for the frames' predictions; the
    # oracle then measures those encoded configurations too (paired.candidates)
    encs = run_encodings(policies, model)
    burst = DEFAULT_BURST_BYTES if link_burst else 0
    robot_latency = Path(robot_latency).resolve() if robot_latency else None
    accuracy, problem = planner_problem(model_scale, encs, model=model, burst_bytes=burst,
                                        latency=robot_latency)
    encoded = encs != ['raw']
    model = resolve(model) if model else None
    spread = [float(x) for x in (robot_spread or [1.0])]
    check_spread(spread)
    meta = {'model': model_label(model), 'robot_scale': robot_scale,
            'robot_factor': float(robot_factor), 'link_burst_bytes': burst,
            'robot_time_spread': spread, 'probe_settle': bool(burst),
            'robot_period_us': int(robot_period_us), 'robot_pacing': robot_pacing}
    if robot_latency:   # a path relative to the results folder when inside it
        meta['robot_latency'] = (os.path.relpath(robot_latency, out_dir.resolve())
                                 if robot_latency.is_relative_to(out_dir.resolve())
                                 else str(robot_latency))
    meta_path = out_dir / META_FILE
    if meta_path.is_file() and not fresh:
        old = json.loads(meta_path.read_text())
        was = (old.get('model', ''), float(old.get('robot_scale', 0)),
               float(old.get('robot_factor', 1.0)), int(old.get('link_burst_bytes', 0)),
               [float(x) for x in old.get('robot_time_spread', [1.0])],
               bool(old.get('probe_settle', False)), old.get('robot_latency', ''),
               recorded_period_us(old), recorded_pacing(old))
        if was != (meta['model'], float(robot_scale), float(robot_factor), burst, spread,
                   bool(burst), meta.get('robot_latency', ''), int(robot_period_us),
                   robot_pacing):
            raise ValueError(f'{out_dir} holds a run of {old}; resume it with the same model, '
                             'robot scale, robot calibration and block times, robot spread, '
                             'robot CPU period and pacing and link burst (and this version\'s '
                             'probe settle), or pass --fresh')
    meta_path.write_text(json.dumps(meta, indent=1) + '\n')
    logdir = Path(logdir or (Path('/tmp') / f'edgent-paired-{int(time.time())}'))
    ran = 0
    with testbed_run(name, bandwidths[0], len(todo), 'paired sweep',
                     robot_period_us=int(robot_period_us)) as (tb, bar):
        if burst and tb.burst_bytes != burst:
            raise RuntimeError(f'testbed burst {tb.burst_bytes} B, planned with {burst} B')
        for bw in bandwidths:
            search = OracleSearch(candidates(problem, accuracy, bw, tb.burst_bytes, encoded),
                                  sorted(float(d) for d in deadlines))
            for c, fs in done_configs.get(float(bw), {}).items():
                search.record(c, fs)
            mine = [t for t in todo if t[0] == bw]
            if search.next() is None and not mine:
                continue
            tb.set_rate(bw)
            planner = {'robot_time_scale': model_scale}
            if burst:
                planner['link_burst_bytes'] = burst
            if len(spread) > 1:
                planner['robot_time_spread'] = spread
            camera = {'wait_for_link': True, 'paused': False, 'robot_time_scale': model_scale,
                      'compute_pacing': robot_pacing}
            if robot_latency:
                planner['latency_models_path'] = camera['latency_models_path'] = \
                    str(robot_latency)
            if burst:   # the bucket a probe pair spent refills before the next capture
                camera['probe_settle_s'] = round(8.0 * burst / (bw * 1e6), 4)
            sess = NodeSession(tb, robot_scale, logdir / f'bw{bw:g}', camera=camera,
                               planner=planner, model=model)
            runner = _Runner(sess, problem, accuracy, float(bw), frames_csv, cells_csv,
                             warmup_s, model_scale)
            try:
                sess.start(bw)
                if search.next() is not None:   # configurations to measure: warm every exit
                    runner.warm([(e, problem.branch_len(e)) for e in sorted(accuracy)]
                                + [(max(accuracy), 0)])
                while True:
                    c = search.next()
                    if c is None:
                        break
                    bar.set_postfix_str(f'{bw:g} Mbit/s, configuration {c.config}')
                    rows = runner.cell(
                        'config', config_policy(c.config), fixed_params(c.config),
                        max(deadlines), config_frames, 0, 0,
                        stop=lambda outs, c=c: search.stop_early(
                            c.config, [_as_frame(o) for o in outs if in_cell(o)]))
                    search.record(c.config, rows)
                    ran += 1
                print(f'sweep paired: {bw:g} Mbit/s: {len(search.measured)} configurations '
                      f'measured, {len(search.skipped)} left out '
                      f'({"; ".join(sorted(set(search.skipped.values())))[:200]})',
                      file=sys.stderr)
                order: Dict[Tuple[float, int], int] = {}
                for _, dl, r, p in mine:
                    order[(dl, r)] = order.get((dl, r), 0) + 1
                    bar.set_postfix_str(f'{bw:g} Mbit/s, {dl:g} ms, rep {r}, {p}')
                    runner.cell('policy', p, planner_params(p, model), float(dl), frames, r,
                                order[(dl, r)])
                    ran += 1
                    bar.update(1)
            finally:
                sess.close()
    return ran


def model_label(model: Optional[Path]) -> str:
    """Return how result files name a model: '' the AlexNet, a shipped name, else its path."""
    if model is None:
        return ''
    model = resolve(model)
    if model.resolve().parent == ARTIFACT_DIR.resolve():
        return model.name.replace('.model.yaml', '')
    return str(model.resolve())


def recorded_period_us(body: Mapping[str, object]) -> int:
    """
    Return the robot CPU period a calibration file or ``paired_meta.json`` records (us).

    Files written before the period was recorded ran at the testbed's default, 100 ms.
    """
    return int(body.get('robot_period_us', DEFAULT_ROBOT_PERIOD_US))


def recorded_pacing(body: Mapping[str, object]) -> str:
    """
    Return the robot emulation's pacing a calibration file or ``paired_meta.json`` records.

    Files written before the pacing was recorded paced ``add`` (``evaluation.emulated_camera``).
    """
    return str(body.get('robot_pacing', DEFAULT_PACING))


def calibration_factor(path: Path, robot_scale: float, model: Optional[Path] = None,
                       robot_period_us: int = DEFAULT_ROBOT_PERIOD_US,
                       robot_pacing: str = DEFAULT_PACING) -> float:
    """
    Return the factor of a ``calibrate_robot`` file, checked against the run it is used for.

    Raises ValueError when the file is missing or unreadable, or was measured at another robot
    scale, on another model than ``model`` (files before models were recorded: the AlexNet),
    at another robot CPU period (files before periods were recorded: the 100 ms default) or
    with another robot pacing (before pacings were recorded: ``add``).
    """
    path = Path(path)
    try:
        cal = json.loads(path.read_text())
        factor, scale = float(cal['factor']), float(cal['robot_scale'])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f'{path}: not a robot calibration of sweep calibrate-robot '
                         f'({exc})') from exc
    if scale != float(robot_scale):
        raise ValueError(f'{path} was measured at robot scale {scale:g}, not {robot_scale:g}')
    period = recorded_period_us(cal)
    if period != int(robot_period_us):
        raise ValueError(f'{path} was measured with a robot CPU period of {period} us, not '
                         f'{int(robot_period_us)} us: pass the same --robot-period-us')
    pacing = recorded_pacing(cal)
    if pacing != robot_pacing:
        raise ValueError(f'{path} was measured with robot pacing {pacing}, not {robot_pacing}: '
                         'pass the same --robot-pacing')
    want, got = model_label(model), str(cal.get('model', ''))
    if got != want:
        raise ValueError(f'{path} was measured on model {got or "alexnet (default)"}, not '
                         f'{want or "alexnet (default)"}: run sweep calibrate-robot --model')
    if not 0.05 <= factor <= 20:
        raise ValueError(f'{path}: factor {factor:g} is outside 0.05..20')
    return factor


def spread_quantiles(ratios: Sequence[float], n: int = SPREAD_QUANTILES) -> List[float]:
    """
    Return ``n`` evenly spaced quantiles of measured / modelled robot times over their median.

    ``core.chance.spread_quantiles``: the smallest and the largest ratio are included.

    Every exit pooled: the planner calibrates one robot factor, so an exit the model gets wrong
    is part of the spread it plans with (planner parameter ``robot_time_spread``).
    """
    return [round(x, 4) for x in chance_quantiles(ratios, n)]


def calibration_spread(path: Path, robot_scale: float, model: Optional[Path] = None,
                       robot_period_us: int = DEFAULT_ROBOT_PERIOD_US,
                       robot_pacing: str = DEFAULT_PACING, of: str = 'exits') -> List[float]:
    """
    Return the robot-time spread of a ``calibrate_robot`` file (checked as ``calibration_factor``).

    ``of`` ``exits``: around the profile x the factor, every exit's device-only frames pooled
    (``spread``: what a planner of the profiled model meets); ``blocks``: around the block
    times the same calibration measured, every frame it measured (``spread_blocks``: what a
    planner of ``robot_latency.json``, ``--robot-latency``, meets). Raises ValueError when the
    file has none (written before that spread was recorded: refit or run ``sweep
    calibrate-robot`` again) or holds a bad one.
    """
    if of not in SPREADS_OF:
        raise ValueError(f'a robot spread is of one of {", ".join(SPREADS_OF)}, not {of!r}')
    calibration_factor(path, robot_scale, model, robot_period_us, robot_pacing)
    key = SPREAD_KEYS[of]
    spread = json.loads(Path(path).read_text()).get(key)
    if not spread:
        raise ValueError(f'{path} records no robot-time {key} (written before it was '
                         'recorded): refit it (edgent-ros sweep calibrate-robot --refit) or '
                         'run sweep calibrate-robot again')
    check_spread(spread)
    return [float(x) for x in spread]


def calibration_latency(path: Path, robot_scale: float, model: Optional[Path] = None,
                        robot_period_us: int = DEFAULT_ROBOT_PERIOD_US,
                        robot_pacing: str = DEFAULT_PACING) -> Path:
    """
    Return the block-times file of a ``calibrate_robot`` file (checked as ``calibration_factor``).

    Raises ValueError when it has none (written before prefixes were measured: run ``sweep
    calibrate-robot`` again) or the file is not there.
    """
    calibration_factor(path, robot_scale, model, robot_period_us, robot_pacing)
    name = json.loads(Path(path).read_text()).get('robot_latency')
    if not name:
        raise ValueError(f'{path} has no robot block times (written before calibrate-robot '
                         'measured prefixes): run edgent-ros sweep calibrate-robot again')
    latency = Path(path).parent / name
    if not latency.is_file():
        raise ValueError(f'{latency}: not found (named by {path})')
    return latency


def _as_frame(o: dict) -> dict:
    """Return the fields of an outcome record that ``paired.frame_latency`` reads."""
    return {'e2e_ms': o['end_to_end_ms'] if o['status'] == OK else None,
            'exit': o['exit_index'], 'split': o['split_index'],
            'encoding': o.get('encoding') or 'raw'}


def device_ratios(rows: Sequence[dict], problem) -> List[float]:
    """
    Return measured / modelled robot time of every classified frame that ran on the robot.

    The model is the frame's own configuration, encoding included (a bottleneck's encoder runs
    on the robot and is profiled like any layer); a row without one was sent raw.
    """
    return [ratio for _, ratio in _config_ratios(rows, problem)]


def _config_ratios(rows: Sequence[dict], problem) -> List[Tuple[Tuple[int, int, str], float]]:
    out = []
    for r in rows:
        if r.get('e2e_ms') is None or int(r['split']) == 0:
            continue
        config = (int(r['exit']), int(r['split']), str(r.get('encoding') or 'raw'))
        model = evaluate(problem, 1e9, *config[:2], encoding=config[2]).device_ms
        if model > 0:
            out.append((config, float(r['device_ms']) / model))
    return out


def config_ratios(rows: Sequence[dict], problem) -> Dict[Tuple[int, int, str], List[float]]:
    """Return ``device_ratios`` grouped by configuration (exit, split, encoding)."""
    by: Dict[Tuple[int, int, str], List[float]] = {}
    for config, ratio in _config_ratios(rows, problem):
        by.setdefault(config, []).append(ratio)
    return by


def config_median_errors(rows: Sequence[dict], problem, factor: float = 1.0,
                         min_frames: int = CONFIG_MEDIAN_FRAMES) -> Tuple[Optional[float], int]:
    """
    Return the model's mean error on each configuration's median robot time, and how many.

    Per (exit, split, encoding) with at least ``min_frames`` robot frames: |factor - median of
    measured / modelled| / that median, averaged over the configurations (each counts once).
    This is the model's own error; a frame's error also holds the robot's frame-to-frame spread,
    which no static model removes (``paired_report.model_errors``' floor). None if no
    configuration has enough frames.
    """
    return median_errors(config_ratios(rows, problem), factor, min_frames)


def median_errors(groups: Mapping[Tuple[int, int, str], Sequence[float]], factor: float = 1.0,
                  min_frames: int = CONFIG_MEDIAN_FRAMES) -> Tuple[Optional[float], int]:
    """``config_median_errors`` of ratios already grouped by ``config_ratios``."""
    errs = [abs(factor - m) / m for m in (statistics.median(v) for v in groups.values()
                                          if len(v) >= min_frames) if m > 0]
    return (sum(errs) / len(errs) if errs else None), len(errs)


def calibrate_robot(out_dir: Path, robot_scale: float = DEFAULT_ROBOT_SCALE,
                    frames: int = CALIBRATION_FRAMES,
                    name: str = TESTBED_NAME, logdir: Optional[Path] = None,
                    model: Optional[Path] = None, refit: bool = False,
                    robot_period_us: int = DEFAULT_ROBOT_PERIOD_US,
                    robot_pacing: str = DEFAULT_PACING,
                    warmup_frames: int = 0, steady_within: Optional[float] = None,
                    attempts: int = CALIBRATION_ATTEMPTS) -> Dict[str, object]:
    """
    Measure the testbed's robot as the planner models it; write ``robot_calibration.json``.

    Every exit runs device-only (policy ``fixed``) for ``frames`` frames on the live emulated
    camera (robot cgroup, ``compute_slowdown``); ``factor`` is the median of measured / modelled
    robot time (model: the profiled layers x ``robot_scale``). A planner given
    ``robot_time_scale`` = ``robot_scale`` x ``factor`` models the robot that runs. The frames go
    to ``robot_calibration_frames.csv``: they are never the evaluation's frames. ``model``: a
    described model (camera and edge run it; default the AlexNet), recorded in the file.
    ``spread``: ``SPREAD_QUANTILES`` quantiles of the ratios over their median, the largest
    included; ``CALIBRATION_FRAMES`` per exit make >= 300 frames on a 4-exit model, so that the
    largest ratio is beyond the 99th percentile with 95 % confidence (0.99^300 < 0.05).
    The model's prefixes also run (``prefix_configs``, ``PREFIX_FRAMES`` frames each) and its
    latency file with the robot's times so measured goes to ``robot_latency.json``
    (``_write_robot_latency``, in units of robot scale x ``factor``; named by
    ``robot_latency``): the profile taken through the emulation, for ``sweep paired
    --robot-latency``, with ``spread_blocks``: the spread of every frame measured (prefixes
    too) around those block times, the spread such a planner meets. All of it in
    ``CALIBRATION_ROUNDS`` interleaved rounds (``calibration_rounds``). ``refit``: run
    nothing; fit both files again from the frames already in ``out_dir`` (after a change to the
    fit), keeping their ``measured_at`` and their robot CPU period and pacing.
    ``robot_period_us``: the robot cgroup's CFS period; ``robot_pacing``: the emulated camera's
    ``compute_pacing``; both recorded in the file (``sweep paired`` refuses the file for a run
    with another). ``warmup_frames``: first run every configuration of the plan this many
    frames (at most its own count), kind ``warmup`` in the frames file and never fitted: a
    calibration's first minutes were its noisiest.

    ``steady_within`` (a fraction, e.g. 0.1; None: no check): a calibration whose
    ``round_spread`` (its rounds' device-only medians, how far apart) is over it caught the host
    changing speed under it. It is run again, up to ``attempts`` in all; each attempt's frames
    carry its number in ``rep`` and only the last one's are fitted (``calibration_attempt``).
    The file records ``round_spread`` always, and ``steady_within``, ``attempts`` and
    ``steady`` when checked.
    """
    cfs_quota_us(DEFAULT_ROBOT_QUOTA, robot_period_us)   # a bad period, before anything runs
    if steady_within is not None and (isinstance(steady_within, bool) or not (
            isinstance(steady_within, (int, float)) and 0 < steady_within <= 1)):
        raise ValueError(f'steady_within must be a fraction in (0, 1], got {steady_within!r}')
    attempts = as_count('attempts', attempts, 1)
    warmup_frames = as_count('warmup frames', warmup_frames)
    check_pacing(robot_pacing)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frames_csv = out_dir / 'robot_calibration_frames.csv'
    model = resolve(model) if model else None
    accuracy, problem, plan = calibration_plan(robot_scale, model, frames)
    if refit:
        if not frames_csv.is_file():
            raise ValueError(f'{frames_csv}: not found (refit fits frames measured before)')
        old = json.loads((out_dir / CALIBRATION_FILE).read_text())
        if old.get('model', '') != model_label(model) or \
                float(old.get('robot_scale', 0)) != float(robot_scale):
            raise ValueError(f'{out_dir / CALIBRATION_FILE} was measured for model '
                             f'{old.get("model") or "the AlexNet"!r} at robot scale '
                             f'{old.get("robot_scale")}: refit it with the same')
        return _calibration_files(out_dir, read_rows(frames_csv), problem, accuracy, model,
                                  robot_scale, int(old['measured_at']),
                                  period_us=recorded_period_us(old),
                                  pacing=recorded_pacing(old),
                                  warmup_frames=int(old.get('warmup_frames', 0)),
                                  steady_within=old.get('steady_within'))
    frames_csv.unlink(missing_ok=True)
    logdir = Path(logdir or (Path('/tmp') / f'edgent-calibrate-{int(time.time())}'))
    tb = Testbed(name=name, rate_mbps=10.0, robot_period_us=int(robot_period_us))
    tried: List[dict] = []   # every attempt's rows
    try:
        tb.setup()
        sess = NodeSession(tb, robot_scale, logdir, camera={'wait_for_link': True,
                                                            'compute_pacing': robot_pacing},
                           model=model)
        runner = _Runner(sess, problem, accuracy, 10.0, frames_csv, None, 1.0, robot_scale)
        try:
            sess.start(10.0)
            for k, (c, n) in enumerate(plan if warmup_frames else []):
                print(f'calibrate: warm-up {config_name(c)} ({min(n, warmup_frames)} frames; '
                      f'{k + 1} of {len(plan)})', file=sys.stderr)
                runner.cell('warmup', config_policy(c), fixed_params(c), 1000.0,
                            min(n, warmup_frames), 0, 0)
            for attempt in range(1, attempts + 1):
                rows = []
                for k, (c, n) in enumerate(calibration_rounds(plan, CALIBRATION_ROUNDS)):
                    print(f'calibrate: {config_name(c)} ({n} frames; cell {k + 1} of '
                          f'{len(plan) * CALIBRATION_ROUNDS}, attempt {attempt})',
                          file=sys.stderr)
                    rows += runner.cell('calibration', config_policy(c), fixed_params(c),
                                        1000.0, n, attempt, 0)
                tried += rows   # the fit takes the last attempt's, and counts them all
                spread = round_spread(rows, problem.branch_len)
                if steady_within is None or spread <= steady_within:
                    break
                print(f'calibrate: attempt {attempt}: the rounds\' device-only medians are '
                      f'{100 * spread:.0f} % apart, over {100 * steady_within:g} %: the host '
                      'changed speed under it' + ('; again' if attempt < attempts
                                                  else '; no attempt left, written as unsteady'),
                      file=sys.stderr)
        finally:
            sess.close()
    finally:
        tb.teardown()
    return _calibration_files(out_dir, tried, problem, accuracy, model, robot_scale,
                              int(time.time()), logdir, int(robot_period_us), robot_pacing,
                              warmup_frames, steady_within)


def _calibration_files(out_dir: Path, every: Sequence[dict], problem, accuracy, model,
                       robot_scale: float, measured_at: int, logdir: Optional[Path] = None,
                       period_us: int = DEFAULT_ROBOT_PERIOD_US,
                       pacing: str = DEFAULT_PACING, warmup_frames: int = 0,
                       steady_within: Optional[float] = None) -> Dict[str, object]:
    """Write ``calibrate_robot``'s two files from its frame rows (warm-up, older attempts out)."""
    every = [r for r in every if r.get('kind') != 'warmup']
    last = calibration_attempt(every)
    tried = len({int(r.get('rep') or 0) for r in every})
    every = [r for r in every if int(r.get('rep') or 0) == last]
    rows = [r for r in every if int(r['split']) == problem.branch_len(int(r['exit']))]
    ratios = device_ratios(rows, problem)
    if not ratios:
        raise RuntimeError(f'no robot frame measured; logs in {logdir}')
    per_exit = {}
    for e in sorted(accuracy):
        r = device_ratios([x for x in rows if int(x['exit']) == e], problem)
        if r:
            per_exit[str(e)] = round(statistics.median(r), 4)
    body = {'model': model_label(model), 'robot_scale': robot_scale,
            'robot_period_us': period_us, 'robot_pacing': pacing,
            'factor': round(statistics.median(ratios), 4),
            'per_exit': per_exit, 'frames': len(ratios), 'measured_at': measured_at,
            'spread': spread_quantiles(ratios),
            'how': 'median of measured / modelled robot time, device-only, every exit; spread: '
                   f'{SPREAD_QUANTILES} quantiles of those ratios over their median (smallest '
                   'to largest), every exit pooled; spread_blocks: the same of every frame '
                   '(prefixes too) over the block times of robot_latency'}
    if warmup_frames:
        body['warmup_frames'] = int(warmup_frames)
    body['round_spread'] = round(round_spread(every, problem.branch_len), 4)
    if steady_within is not None:
        body.update(steady_within=float(steady_within), attempts=tried,
                    steady=body['round_spread'] <= float(steady_within))
    body['robot_latency'] = _write_robot_latency(
        out_dir / ROBOT_LATENCY_FILE, model, every, robot_scale * float(body['factor']))
    encs = sorted({str(r.get('encoding') or 'raw') for r in every} | {'raw'})
    _, measured = planner_problem(robot_scale * float(body['factor']), encs, model=model,
                                  latency=out_dir / body['robot_latency'])
    body['spread_blocks'] = spread_quantiles(device_ratios(every, measured))
    (out_dir / CALIBRATION_FILE).write_text(json.dumps(body, indent=1) + '\n')
    return body


def calibration_attempt(rows: Sequence[dict]) -> int:
    """
    Return the attempt whose frames a calibration fits: the last (the highest ``rep``).

    Files written before attempts were counted hold one, ``rep`` 0.
    """
    return max((int(r.get('rep') or 0) for r in rows), default=0)


def round_share(n: int, rounds: int, k: int) -> int:
    """Return round ``k``'s share of ``n`` frames run in ``rounds`` rounds (the first get more)."""
    return n // rounds + (1 if k < n % rounds else 0)


def round_spread(rows: Sequence[dict], branch_len: Callable[[int], int],
                 rounds: int = CALIBRATION_ROUNDS) -> float:
    """
    Return how far apart one calibration attempt's rounds measured the robot: max / min - 1.

    Per exit, its device-only rows (split ``branch_len(exit)``) in the order they ran are
    ``rounds`` rounds one after the other (``round_share`` each, as ``calibration_rounds`` ran
    them; a dropped frame is a row too): the median of each round's measured frames, the
    largest over the smallest; the largest of that over the exits. A host that changed speed
    for a minute moves one round of an exit (BENCHMARKS §16, "Warm pacing and a steady
    calibration").
    """
    worst = 0.0
    for e in sorted({int(r['exit']) for r in rows}):
        seq = [r for r in rows if int(r['exit']) == e and int(r['split']) == branch_len(e)]
        medians, start = [], 0
        for k in range(rounds):
            n = round_share(len(seq), rounds, k)
            part = [float(r['device_ms']) for r in seq[start:start + n]
                    if r.get('e2e_ms') is not None]
            start += n
            if part:
                medians.append(statistics.median(part))
        if len(medians) > 1 and min(medians) > 0:
            worst = max(worst, max(medians) / min(medians) - 1.0)
    return worst


def calibration_rounds(plan: Sequence[Tuple[Tuple[int, int], int]], rounds: int
                       ) -> List[Tuple[Tuple[int, int], int]]:
    """
    Return ``plan`` ((configuration, frames) pairs) as ``rounds`` interleaved rounds.

    Each round runs every configuration for its share of the frames, the order reversed every
    other round: the host's speed drifts over the minutes a calibration takes, and this way the
    drift falls on every configuration alike instead of on the ones measured last.
    """
    if rounds < 1:
        raise ValueError(f'rounds must be >= 1, got {rounds}')
    out = []
    for r in range(rounds):
        step = [(c, round_share(n, rounds, r)) for c, n in plan]
        out += [(c, n) for c, n in (step if r % 2 == 0 else step[::-1]) if n > 0]
    return out


def prefix_configs(problem, branched: bool) -> List[Tuple[int, int]]:
    """
    Return the (exit, split) prefixes ``calibrate_robot`` measures besides device-only.

    Every split of the last exit (its trunk); ``branched`` (the AlexNet, whose side exits have
    heads of several layers): also each side exit's splits past its attach point.
    """
    last = max(problem.exits)
    out = [(last, s) for s in range(1, problem.branch_len(last))]
    if branched:
        out += [(e, s) for e, a in sorted(EXIT_ATTACH.items())
                for s in range(a + 1, problem.branch_len(e))]
    return out


def calibration_plan(robot_scale: float, model: Optional[Path], frames: int):
    """
    Return ``(accuracy, problem, plan)`` of ``calibrate_robot``: what it runs, and how often.

    ``plan``: (configuration, frames) of every exit device-only (``frames`` each), the
    ``prefix_configs`` and the ``encoder_configs`` (``PREFIX_FRAMES`` each); ``problem`` is
    the static model at ``robot_scale`` with every encoding of the plan (its frames' predictions).
    """
    encs = ['raw'] + (bottleneck_encodings(model=model) if model is not None else [])
    accuracy, problem = planner_problem(robot_scale, encs, model=model)
    coders = encoder_configs(problem)
    plan = [((e, problem.branch_len(e)), frames) for e in sorted(accuracy)] + \
        [(c, PREFIX_FRAMES) for c in prefix_configs(problem, model is None)] + \
        [(c, PREFIX_FRAMES) for c in coders]
    return accuracy, problem, plan


def encoder_configs(problem) -> List[Tuple[int, int, str]]:
    """
    Return the (exit, split, bottleneck) ``calibrate_robot`` measures a learned encoder at.

    Every learned bottleneck ``problem`` plans (its encoding variants), on the whole-trunk exit
    (the encoder is the same whichever exit follows): its robot time less the raw prefix's is
    the encoder's (``_write_robot_latency``). None for a problem without any (the AlexNet).
    """
    last = max(problem.exits)
    return sorted({(last, s, v.encoding) for (e, s), vs in (problem.variants or {}).items()
                   if e == last and 0 < s < problem.branch_len(last)
                   for v in vs if bottleneck_width(v.encoding) is not None})


def _write_robot_latency(path: Path, model: Optional[Path], rows: Sequence[dict],
                         scale: float) -> str:
    """
    Write the model's latency file with the robot's times from ``rows``; return its name.

    Each measured configuration's median robot time, in units of ``scale`` (robot scale x the
    calibration's factor: the planner's ``robot_time_scale`` in a run with
    ``--robot-calibration``), weighted by its frames: a described model's block times
    (``core.model_plan.measured_robot_blocks``), or the AlexNet's latency models with measured
    robot branches (``LatencyModels.with_measured_robot``).
    """
    by: Dict[Tuple[int, int], List[float]] = {}
    coded: Dict[Tuple[int, int, str], List[float]] = {}
    for r in rows:
        if r.get('e2e_ms') is not None and int(r['split']) > 0:
            enc = str(r.get('encoding') or 'raw')
            key = (int(r['exit']), int(r['split']))
            (by.setdefault(key, []) if enc == 'raw'
             else coded.setdefault(key + (enc,), [])).append(float(r['device_ms']))
    medians = {k: statistics.median(v) for k, v in by.items()}
    weights = {k: float(len(v)) for k, v in by.items()}
    # an encoder's robot time: its cut's median less the raw prefix's at the same cut
    encoders = {(s, x): statistics.median(v) - medians[(e, s)]
                for (e, s, x), v in coded.items() if (e, s) in medians}
    if model is None:
        cfg = read_config()
        LatencyModels.load(model_id=cfg.model_id()).with_measured_robot(
            cfg, medians, scale, weights).save(path, cfg.model_id())
        return path.name
    files = load_description(model).files()
    table = load_table(files['table'])
    latency = load_block_latency(files['latency'], table['model_id'])
    body = measured_robot_blocks(latency, table, medians, scale, weights, encoders)
    save_json({k: v for k, v in body.items() if k not in ('format', 'sha256')}, path,
              LATENCY_FORMAT)
    return path.name
