"""
The evaluation on the link testbed (issue 6): static-bandwidth sweeps and trace replays.

``edgent-ros sweep run`` (root) builds a ``Testbed``, and for each bandwidth starts the real
nodes once -- ``edge_node`` in the edge namespace, ``planner_node`` and ``camera_node`` in the
robot namespace under the robot CPU cgroup -- plus a controller (an rclpy node in the robot
namespace, role ``_control`` below) that sets the planner's ``policy``, ``deadline_ms`` and
``true_bandwidth_bps`` (read by the oracle only) through its parameter service and prints every
outcome, decision and link-quality message as a JSON line. Every cell (policy x deadline at that
bandwidth) waits for the planner's decision for that policy and deadline, then counts the frames
*captured after it* (capture stamps) until it has ``frames`` of them, and appends one row to the
results CSV (flushed: a crash loses at most the cell under way, and a rerun skips the cells
already there). The robot is ``robot_scale`` times slower than the profiled one: the camera's
``compute_slowdown`` (the emulated robot camera, ``evaluation.emulated_camera``) and the
planner's ``robot_time_scale`` (see BENCHMARKS.md).

``edgent-ros sweep traces`` replays segments of real bandwidth traces the same way, one policy
after the other over the same segment, and ``edgent-ros sweep plot`` draws the PNGs and prints
the target check. Nothing here runs without root; rclpy is imported only in the controller role.
"""

from __future__ import annotations

from contextlib import contextmanager
import csv
from dataclasses import replace
import json
import os
from pathlib import Path
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ..core.artifacts import load_accuracy, load_encodings, read_config
from ..core.latency import LatencyModels
from ..core.model_desc import load_description
from ..core.model_plan import (load_block_latency, load_model_accuracy, load_model_encodings,
                               load_table, problem_for)
from ..core.optimizer import EdgentProblem, evaluate, scale_robot
from ..core.paths import find_data, results_out
from ..offline.map_builder import build_map, read_trace
from .sweep import (add_on_time_accuracy, aggregate, all_encodings, append_rows, big_drops,
                    cell_key, check_grid, CSV_FIELDS, DEFAULT_DEADLINES_MS, DEFAULT_ROBOT_SCALE,
                    FRAME_FIELDS, in_cell, model_encodings, offline_oracle, planner_params,
                    plot_cdfs, plot_predicted, plot_sweep, plot_trace, reaction_times, read_done,
                    read_rows, trace_oracle, TRACE_POLICIES)
from .testbed import ROBOT_COMPUTE_SLOWDOWN, Testbed, TracePlayer
from .testbed_session import (_stop, camera_argv, DECISION_FIELDS, executable, FASTDDS_PROFILE,
                              record_topics, ros_args, session_env, spin_until)

TESTBED_NAME = 'edsweep'
# sweep traces without --trace: the windows the held-out rule chose (heldout.choose_live),
# written before any replay
TRACES_PLAN_FILE = 'traces_plan.json'
TRACE_DEADLINE_MS = 300.0
# Per-message overhead (ms) of the testbed's planner and predictions: DDS, (de)serialisation and
# Python on both sides, from edge-only frames at 5-10 Mbit/s (measured minus bytes/rate minus the
# edge model); the default 2.0 under-predicts here.
TESTBED_OVERHEAD_MS = 4.0
WARMUP_MBPS = 10.0


class SweepError(RuntimeError):
    """The nodes did not come up or stopped answering."""


class NodeSession:
    """The nodes of one testbed run, kept up across cells; bounded waits everywhere."""

    def __init__(self, tb, robot_scale: float, logdir: Path, fps: float = 20.0,
                 camera: Optional[Dict[str, object]] = None,
                 planner: Optional[Dict[str, object]] = None,
                 profile: Optional[Path] = FASTDDS_PROFILE, domain_id: Optional[int] = None,
                 model: Optional[Path] = None):
        self.tb = tb
        self.model = str(Path(model).resolve()) if model else ''   # a described model
        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.env = session_env(domain_id if domain_id is not None else random.randint(200, 232),
                               profile)
        self.camera = {'source': 'sample', 'loop': True, 'fps': float(fps), 'max_in_flight': 1,
                       'result_timeout_s': 15.0, 'edge_timeout_s': 6.0, 'wait_for_edge_s': 60.0,
                       'wait_for_subscribers': 2, 'publish_frames': False,   # recorder+planner
                       'compute_slowdown': ROBOT_COMPUTE_SLOWDOWN * robot_scale,
                       'robot_time_scale': float(robot_scale)}
        self.camera.update(camera or {})
        if self.model:
            self.camera['model'] = self.model
        # edge_node '': no advisory parameter sets across the shaped link during measurements
        self.planner = {'robot_time_scale': float(robot_scale), 'link_timeout_s': 5.0,
                        'overhead_ms': TESTBED_OVERHEAD_MS, 'edge_node': "''"}
        self.planner.update(planner or {})
        if self.model:
            self.planner['model'] = self.model
        self.procs: Dict[str, subprocess.Popen] = {}
        self.specs: Dict[str, tuple] = {}   # name -> how it was started (restart)
        self.logs = []
        self.lines: 'queue.Queue[dict]' = queue.Queue()
        self.records: List[dict] = []
        self.acks: Dict[int, dict] = {}
        self._next_id = 0

    # -- processes ------------------------------------------------------------------------------
    def _start(self, name: str, which: str, argv: List[str], cgroup: bool, **kw) -> None:
        if name != 'controller':
            self.specs[name] = (which, list(argv), cgroup)
        log = open(self.logdir / f'{name}.log', 'a')
        self.logs.append(log)
        self.procs[name] = self.tb.run_in(
            which, argv, cgroup=self.tb.cgroup if (cgroup and self.tb.robot_quota) else None,
            env=self.env, stdout=kw.pop('stdout', log), stderr=log, start_new_session=True, **kw)

    def start(self, rate_mbps: float, timeout_s: float = 120.0, settle_s: float = 4.0) -> None:
        """
        Start edge, planner, camera and controller; return once the link is ready.

        They start at ``WARMUP_MBPS``, edge-only, until the first edge result (DDS discovery of
        four participants takes many seconds below 1 Mbit/s); then the link is shaped to
        ``rate_mbps`` and the bandwidth estimate gets ``settle_s`` to settle.
        """
        policy, deadline_ms, true_bandwidth_bps = 'edge-only', 1000.0, WARMUP_MBPS * 1e6
        self.tb.set_rate(WARMUP_MBPS)
        self._start('controller', 'robot',
                    [sys.executable, '-m', 'edgent_ros.evaluation.sweep_session', '_control',
                     str(24 * 3600)], False,
                    stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True, bufsize=1)
        threading.Thread(target=self._read, daemon=True).start()
        self._start('edge_node', 'edge', [executable('edge_node'), *ros_args(
            {'model': self.model} if self.model else {})], False)
        self._start('planner_node', 'robot', [executable('planner_node'), *ros_args(dict(
            self.planner, policy=policy, deadline_ms=float(deadline_ms),
            true_bandwidth_bps=float(true_bandwidth_bps)))], True)
        self._start('camera_node', 'robot', camera_argv(self.camera), True)
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            self.pump(0.5)
            if any(r['topic'] == 'outcome' and r['status'] == 0 and r['finished_on'] == 0
                   for r in self.records):
                self.tb.set_rate(rate_mbps)
                time.sleep(settle_s)
                return
            self.check_alive()
        raise SweepError(f'no edge result within {timeout_s:g} s; logs in {self.logdir}')

    def kill(self, name: str, sig: int = signal.SIGKILL, timeout_s: float = 10.0) -> Optional[int]:
        """Send ``sig`` to node process ``name`` and wait for it (then SIGKILL); its exit code."""
        p = self.procs[name]
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
                p.wait(timeout_s)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5.0)
        return p.poll()

    def restart(self, name: str) -> None:
        """Start node process ``name`` again, as it was first started (after ``kill``)."""
        if self.procs[name].poll() is None:
            raise SweepError(f'{name} is still running: kill it first')
        which, argv, cgroup = self.specs[name]
        self._start(name, which, argv, cgroup)

    def _read(self) -> None:
        for line in self.procs['controller'].stdout:
            try:
                self.lines.put(json.loads(line))
            except ValueError:
                continue

    def check_alive(self) -> None:
        """Raise ``SweepError`` with the log tail of a node process that exited."""
        for name, p in self.procs.items():
            if p.poll() is not None:
                tail = (self.logdir / f'{name}.log').read_text()[-2000:] \
                    if (self.logdir / f'{name}.log').exists() else ''
                raise SweepError(f'{name} exited ({p.returncode}); log tail:\n{tail}')

    def pump(self, wait_s: float = 0.0) -> int:
        """Move controller lines into ``records``/``acks``; return how many arrived."""
        n = 0
        try:
            rec = self.lines.get(timeout=wait_s) if wait_s > 0 else self.lines.get_nowait()
        except queue.Empty:
            return 0
        while True:
            n += 1
            if rec.get('topic') == 'ack':
                self.acks[int(rec['id'])] = rec
            else:
                self.records.append(rec)
            try:
                rec = self.lines.get_nowait()
            except queue.Empty:
                return n

    def close(self) -> Dict[str, Optional[int]]:
        """Stop every process (SIGINT, then SIGKILL) and close the logs."""
        ctl = self.procs.get('controller')
        if ctl is not None and ctl.poll() is None:
            try:
                ctl.stdin.write('{"cmd": "quit"}\n')
                ctl.stdin.flush()
            except (OSError, ValueError):
                pass
        codes = {name: _stop(p) for name, p in reversed(list(self.procs.items()))}
        for log in self.logs:
            log.close()
        return codes

    # -- control --------------------------------------------------------------------------------
    def set_planner(self, wait: bool = True, timeout_s: float = 15.0, **params) -> float:
        """Set planner parameters (atomically); return the wall time of the answer."""
        return self.set_params('planner_node', wait, timeout_s, **params)

    def set_params(self, node: str, wait: bool = True, timeout_s: float = 15.0,
                   **params) -> float:
        """Set parameters of ``node`` (planner_node or camera_node) atomically; return when."""
        self._next_id += 1
        cid = self._next_id
        self.procs['controller'].stdin.write(json.dumps({'cmd': 'set', 'id': cid, 'node': node,
                                                         'params': params}) + '\n')
        self.procs['controller'].stdin.flush()
        if not wait:
            return time.time()
        end = time.monotonic() + timeout_s
        while time.monotonic() < end and cid not in self.acks:
            self.pump(0.2)
            self.check_alive()
        ack = self.acks.get(cid)
        if ack is None:
            raise SweepError(f'{node} did not answer a parameter set in {timeout_s:g} s')
        if not ack['ok']:
            raise SweepError(f'{node} refused {params}: {ack.get("reason")}')
        return float(ack['t'])

    def decisions(self, policy: str, deadline_ms: float, since_index: int) -> List[dict]:
        """Return the decisions of ``policy`` at ``deadline_ms`` recorded after ``since_index``."""
        return [r for r in self.records[since_index:] if r['topic'] == 'decision'
                and r.get('policy') == policy
                and abs(float(r['deadline_ms']) - deadline_ms) < 1e-6]

    def wait_decision(self, policy: str, deadline_ms: float, since_index: int,
                      timeout_s: float = 15.0) -> dict:
        """Wait for a decision of ``policy`` at ``deadline_ms`` received after ``since_index``."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            found = self.decisions(policy, deadline_ms, since_index)
            if found:
                return found[0]
            self.pump(0.2)
            self.check_alive()
        raise SweepError(f'no decision for {policy} at {deadline_ms:g} ms in {timeout_s:g} s')

    def collect(self, since_stamp: float, frames: int, timeout_s: float,
                until_stamp: Optional[float] = None,
                stop: Optional[Callable[[List[dict]], bool]] = None
                ) -> Tuple[List[dict], List[dict], List[dict]]:
        """
        Return the outcomes of frames captured in a window, with decisions and link quality.

        The window starts at ``since_stamp`` (capture stamps) and ends before ``until_stamp``;
        collecting stops at ``frames`` counted outcomes (closed-loop skips do not count), once
        every frame captured in the window has an outcome, when ``stop(outcomes so far)`` says
        so, or at ``timeout_s``.
        """
        start_index = len(self.records)
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            self.pump(0.2)
            outs = [r for r in self.records if r['topic'] == 'outcome'
                    and r['stamp'] >= since_stamp
                    and (until_stamp is None or r['stamp'] < until_stamp)]
            if frames and sum(in_cell(o) for o in outs) >= frames:
                break
            if stop is not None and stop(sorted(outs, key=lambda r: r['sequence'])):
                break
            if until_stamp is not None and time.time() > until_stamp + 1.0:
                last = [r for r in self.records if r['topic'] == 'outcome']
                if last and last[-1]['stamp'] >= until_stamp:
                    break   # the camera is past the window: every frame in it has its outcome
            self.check_alive()
        outs = sorted((r for r in self.records if r['topic'] == 'outcome'
                       and r['stamp'] >= since_stamp
                       and (until_stamp is None or r['stamp'] < until_stamp)),
                      key=lambda r: r['sequence'])
        if frames:
            kept, n = [], 0
            for o in outs:
                if n >= frames:
                    break
                kept.append(o)
                n += in_cell(o)
            outs = kept
        later = self.records[start_index:]
        return (outs, [r for r in later if r['topic'] == 'decision'],
                [r for r in later if r['topic'] == 'link_quality'])


# ------------------------------------------------------------------------------------------------
# Static-bandwidth sweep

def planner_problem(robot_scale: float, encodings: Sequence[str] = ('raw',),
                    model: Optional[Path] = None, burst_bytes: int = 0,
                    latency: Optional[Path] = None):
    """
    Return ``({exit: top1}, problem)``: the planner's problem at the testbed's robot class.

    ``model``: a described model (its table, block times and accuracy; the encodings its
    accuracy table measured, ``edgent-ros train-bottleneck --model``). ``burst_bytes``: the
    planner is told the shaper's burst (its ``link_burst_bytes``). ``latency``: the model's
    latency file from this path instead of its own (``calibrate_robot``'s
    ``robot_latency.json``; the planner's ``latency_models_path``).
    """
    acc, problem = _planner_problem(robot_scale, encodings, model, latency)
    return acc, (replace(problem, link_burst_bytes=int(burst_bytes)) if burst_bytes else problem)


def _planner_problem(robot_scale: float, encodings: Sequence[str], model: Optional[Path],
                     latency: Optional[Path] = None):
    if model:
        files = load_description(model).files()
        table = load_table(files['table'])
        acc = load_model_accuracy(files['accuracy'], table['model_id'])
        enc = (load_model_encodings(files['accuracy'], table['model_id'])
               if list(encodings) != ['raw'] else None)
        return acc, problem_for(table, load_block_latency(latency or files['latency'],
                                                          table['model_id']),
                                acc, overhead_ms=TESTBED_OVERHEAD_MS,
                                robot_time_scale=robot_scale, encodings=list(encodings),
                                encoding_table=enc)
    cfg = read_config()
    acc = load_accuracy(model_id=cfg.model_id())
    table = load_encodings(model_id=cfg.model_id()) if list(encodings) != ['raw'] else None
    return acc, scale_robot(EdgentProblem.from_model(
        cfg, acc, LatencyModels.load(latency, model_id=cfg.model_id()),
        overhead_ms=TESTBED_OVERHEAD_MS, encodings=list(encodings), encoding_table=table),
        robot_scale)


def _enc_accuracy(model: Optional[Path] = None) -> Dict[Tuple[int, int, str], float]:
    if model:   # a described model: what train-bottleneck --model measured (else raw only)
        return {k: v.top1 for k, v in model_encodings(model).items()}
    return {k: v.top1 for k, v in load_encodings().items()}


def _predictor(problem, bw_bps: float) -> Callable[[int, int, str], float]:
    """Predicted end-to-end ms of (exit, split, encoding) at the cell's true bandwidth."""
    return lambda e, s, x: float(evaluate(problem, bw_bps, e, s, encoding=x).total_ms)


@contextmanager
def testbed_run(name: str, rate_mbps: float, total: int, desc: str, **testbed_kw):
    """
    Yield ``(testbed, progress bar)``: the testbed set up, removed afterwards whatever happens.

    The frame of every testbed run (sweep, traces, paired, held-out, lossy): ``total`` steps of
    progress named ``desc``, the shaper at ``rate_mbps`` to begin with; ``testbed_kw`` go to
    ``Testbed`` (e.g. ``relay=True``).
    """
    tb = Testbed(name=name, rate_mbps=float(rate_mbps), **testbed_kw)
    bar = _progress(total, desc)
    try:
        tb.setup()
        yield tb, bar
    finally:
        bar.close()
        tb.teardown()


def _progress(total: int, desc: str):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit='cell', file=sys.stderr, dynamic_ncols=True)


def run_sweep(out_csv: Path, bandwidths: Sequence[float], deadlines: Sequence[float],
              policies: Sequence[str], frames: int, robot_scale: float = DEFAULT_ROBOT_SCALE,
              fps: float = 20.0, settle_s: float = 0.5, cell_timeout_s: Optional[float] = None,
              name: str = TESTBED_NAME, logdir: Optional[Path] = None,
              frames_csv: Optional[Path] = None, fresh: bool = False,
              model: Optional[Path] = None) -> int:
    """
    Run every cell not yet in ``out_csv``; return the number of cells run.

    ``model``: a model description; camera, edge and planner run it (default the AlexNet).
    """
    check_grid(bandwidths, deadlines, policies)
    if frames < 1:
        raise ValueError(f'frames must be >= 1, got {frames}')
    out_csv = Path(out_csv)
    frames_csv = Path(frames_csv) if frames_csv else out_csv.with_name(
        out_csv.stem + '_frames.csv')
    if fresh:
        for p in (out_csv, frames_csv):
            p.unlink(missing_ok=True)
    done = read_done(out_csv)
    todo = [(bw, dl, p) for bw in bandwidths for dl in deadlines for p in policies
            if cell_key(p, bw, dl) not in done]
    print(f'sweep: {len(todo)} cells to run ({len(done)} already in {out_csv}), {frames} frames '
          f'each, robot {robot_scale:g}x the profiled one', file=sys.stderr)
    if not todo:
        return 0
    # every encoding a live policy may send (edgent+bn: the bottlenecks too), for predictions
    accuracy, problem = planner_problem(robot_scale, all_encodings(model), model=model)
    enc_accuracy = _enc_accuracy(model)
    cell_timeout_s = cell_timeout_s or 30.0 + 3.0 * frames
    logdir = Path(logdir or (Path('/tmp') / f'edgent-sweep-{int(time.time())}'))
    ran = 0
    with testbed_run(name, bandwidths[0], len(todo), 'sweep') as (tb, bar):
        for bw in bandwidths:
            mine = [(dl, p) for b, dl, p in todo if b == bw]
            if not mine:
                continue
            tb.set_rate(bw)
            sess = NodeSession(tb, robot_scale, logdir / f'bw{bw:g}', fps=fps, model=model)
            try:
                sess.start(bw)
                for dl, p in mine:
                    bar.set_postfix_str(f'{bw:g} Mbit/s, {dl:g} ms, {p}')
                    t0 = time.time()
                    idx = len(sess.records)
                    params = planner_params(p, model)
                    # same start state for every policy of a cell: the online calibration
                    # forgets what earlier cells taught it (off discards, on starts afresh)
                    sess.set_planner(calibration=False)
                    sess.set_planner(deadline_ms=float(dl), true_bandwidth_bps=float(bw * 1e6),
                                     calibration=True, **params)
                    sess.wait_decision(str(params['policy']), dl, idx)
                    time.sleep(settle_s)   # the planner's parameter push reaches the camera
                    outs, _, _ = sess.collect(time.time(), frames, cell_timeout_s)
                    decs = sess.decisions(str(params['policy']), dl, idx)
                    row, per_frame = aggregate(outs, accuracy, _predictor(problem, bw * 1e6),
                                               decs, enc_accuracy)
                    key = {'policy': p, 'bandwidth_mbps': bw, 'deadline_ms': dl}
                    row.update(key, robot_scale=robot_scale,
                               elapsed_s=round(time.time() - t0, 2))
                    append_rows(frames_csv, [dict(f, **key) for f in per_frame], FRAME_FIELDS)
                    append_rows(out_csv, [row])
                    ran += 1
                    bar.update(1)
            finally:
                sess.close()
    n = write_oracle(out_csv, frames_csv, min_frames=min(10, frames), model=model)
    print(f'sweep: {n} oracle cells computed from the measurements', file=sys.stderr)
    return ran


def map_traces(path: Path) -> List[str]:
    """Return the trace names a configuration map was built from (``build_map``'s 'traces')."""
    try:
        names = json.loads(Path(path).read_text()).get('traces', [])
    except (OSError, ValueError, AttributeError) as exc:
        raise ValueError(f'{path}: not a configuration map ({exc})') from exc
    return [str(n) for n in names] if isinstance(names, list) else []


def build_default_map(path: Path, robot_scale: float, exclude: Sequence[str],
                      trace_dir: Optional[Path] = None) -> Path:
    """
    Build the testbed's configuration map from every trace in ``trace_dir`` not excluded.

    ``trace_dir`` None: the traces data set (``core.paths.find_data``, ``$EDGENT_ROS_DATA``).
    """
    trace_dir = find_data('traces') if trace_dir is None else trace_dir
    files = sorted(p for p in Path(trace_dir).glob('*.csv')
                   if p.name != 'index.csv' and p.name not in set(exclude))
    if not files:
        raise ValueError(f'no traces to build a map from in {trace_dir}')
    _, problem = planner_problem(robot_scale)
    body = build_map(problem, {p.name: read_trace(p) for p in files},
                     list(DEFAULT_DEADLINES_MS))
    body.update(model_id=read_config().model_id(), robot_time_scale=robot_scale)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body, indent=1) + '\n')
    print(f'configuration map from {len(files)} traces (not the replayed ones): {path}',
          file=sys.stderr)
    return path


def write_oracle(out_csv: Path, frames_csv: Path, min_frames: int = 10,
                 model: Optional[Path] = None) -> int:
    """Replace the ``oracle`` rows of ``out_csv`` by the offline oracle of ``frames_csv``."""
    if not Path(out_csv).exists() or not Path(frames_csv).exists():
        return 0
    if model:
        files = load_description(model).files()
        acc = load_model_accuracy(files['accuracy'], load_table(files['table'])['model_id'])
    else:
        cfg = read_config()
        acc = load_accuracy(model_id=cfg.model_id())
    rows = [r for r in read_rows(out_csv) if r['policy'] != 'oracle']
    frames = read_rows(frames_csv)
    add_on_time_accuracy(rows, frames, acc, _enc_accuracy(model))   # a lossy frame: its own top-1
    oracle = offline_oracle(frames, acc, min_frames=min_frames)
    scale = {float(r['bandwidth_mbps']): r.get('robot_scale') for r in rows}
    for r in oracle:
        r['robot_scale'] = scale.get(float(r['bandwidth_mbps']))
    tmp = Path(str(out_csv) + '.tmp')
    tmp.unlink(missing_ok=True)
    append_rows(tmp, [_as_written(r) for r in rows] + oracle, CSV_FIELDS)
    tmp.replace(out_csv)
    return len(oracle)


def _as_written(row: Dict[str, object]) -> Dict[str, object]:
    """Undo read_rows' float conversion of integer columns."""
    out = dict(row)
    for k in ('frames', 'classified', 'exit', 'split', 'decisions'):
        if isinstance(out.get(k), float):
            out[k] = int(out[k])
    return out


# ------------------------------------------------------------------------------------------------
# Trace replays

def trace_rows(path: Path, start_s: float, duration_s: float) -> List[Tuple[float, float]]:
    """Return the ``[start_s, start_s + duration_s)`` segment of a trace, re-based to t = 0."""
    with open(path, newline='') as f:
        rows = [(float(r['t_s']), float(r['mbps'])) for r in csv.DictReader(f)]
    seg = [(t - start_s, r) for t, r in rows if start_s <= t < start_s + duration_s]
    before = [(t, r) for t, r in rows if t < start_s]
    if not seg or seg[0][0] > 0:
        if not before:
            raise ValueError(f'{path}: no rows at {start_s} s')
        seg.insert(0, (0.0, before[-1][1]))
    return seg


def run_traces(out_dir: Path, traces: Sequence[Tuple[str, float, float]],
               policies: Sequence[str], deadline_ms: float = TRACE_DEADLINE_MS,
               robot_scale: float = DEFAULT_ROBOT_SCALE, fps: float = 20.0,
               name: str = TESTBED_NAME, logdir: Optional[Path] = None,
               trace_dir: Optional[Path] = None, map_path: Optional[Path] = None) -> List[dict]:
    """
    Replay each trace segment once per policy; write ``traces.csv`` and per-trace JSON.

    ``edgent-map`` runs the planner's Edgent policy with strategy ``map`` (``map_path``).
    """
    check_grid([1.0], [deadline_ms], policies, allowed=TRACE_POLICIES)
    trace_dir = find_data('traces') if trace_dir is None else trace_dir
    if 'edgent-map' in policies and not (map_path and Path(map_path).is_file()):
        raise ValueError(f'edgent-map needs a configuration map, {map_path} not found')
    accuracy, problem = planner_problem(robot_scale)
    enc_accuracy = _enc_accuracy()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    logdir = Path(logdir or (Path('/tmp') / f'edgent-traces-{int(time.time())}'))
    rows_out = []
    with testbed_run(name, 1.0, len(traces) * len(policies), 'traces') as (tb, bar):
        for fname, start_s, dur in traces:
            rows = trace_rows(Path(trace_dir) / fname, start_s, dur)
            player = TracePlayer(rows, loop=False)
            tb.set_rate(rows[0][1])
            sess = NodeSession(tb, robot_scale, logdir / Path(fname).stem, fps=fps,
                               planner={'config_map_path': str(Path(map_path).resolve())}
                               if map_path else None)
            series = {}
            try:
                sess.start(rows[0][1])
                for p in policies:
                    bar.set_postfix_str(f'{fname} {p}')
                    tb.set_rate(rows[0][1])
                    idx = len(sess.records)
                    params = dict(planner_params(p), deadline_ms=float(deadline_ms),
                                  true_bandwidth_bps=float(rows[0][1] * 1e6))
                    planner_policy = str(params['policy'])
                    if map_path:
                        params['strategy'] = 'map' if p == 'edgent-map' else 'per-sample'
                    sess.set_planner(**params)
                    sess.wait_decision(planner_policy, deadline_ms, idx)
                    time.sleep(3.0)   # the estimate settles on the segment's first rate
                    rates: List[Tuple[float, float]] = []
                    t0 = time.time()

                    def on_step(wall: float, mbps: float, p=p) -> None:
                        rates.append((wall, mbps))
                        if p == 'true-bandwidth':
                            sess.set_planner(wait=False, true_bandwidth_bps=float(mbps * 1e6))
                    th, stop = player.start(tb.set_rate, dur, on_step=on_step)
                    outs, decs, links = sess.collect(t0, 0, dur + 40.0, until_stamp=t0 + dur)
                    stop.set()
                    th.join(5.0)
                    row, per_frame = aggregate(outs, accuracy, None, decs, enc_accuracy)
                    switches = sum(1 for a, b in zip(decs, decs[1:])
                                   if (a['exit_index'], a['split_index'], a.get('encoding'))
                                   != (b['exit_index'], b['split_index'], b.get('encoding')))
                    dec_t = [(d['t'] - t0, d['exit_index'], d['split_index']) for d in decs]
                    reacts = reaction_times(big_drops(rates), dec_t)
                    got = [r for r in reacts if r is not None]
                    states = [d.get('reason', '').split(' Mbit/s')[0] for d in decs
                              if str(d.get('reason', '')).startswith('map state')]
                    row.update(trace=fname, start_s=start_s, duration_s=dur, policy=p,
                               deadline_ms=deadline_ms, switches=switches,
                               robot_scale=robot_scale, big_drops=len(reacts),
                               reacted=len(got),
                               reaction_s=round(sum(got) / len(got), 3) if got else None,
                               state_changes=sum(1 for a, b in zip(states, states[1:])
                                                 if a != b) if states else None)
                    rows_out.append(row)
                    series[p] = {
                        'deadline_ms': deadline_ms, 'rates': rates,
                        'estimate': [(lq['t'] - t0, lq['uplink_bandwidth_bps'] / 1e6)
                                     for lq in links if lq['uplink_bandwidth_bps'] > 0],
                        'decisions': [(d['t'] - t0, d['exit_index'], d['split_index'],
                                       d['bandwidth_bps'] / 1e6, d.get('reason', ''))
                                      for d in decs],
                        'frames': [(o['stamp'] - t0,
                                    o['end_to_end_ms'] if o['status'] == 0 else None,
                                    o['exit_index'], o['split_index'],
                                    int(bool(o['deadline_met'])), o['drop_reason'])
                                   for o in outs if o['status'] == 0 or
                                   o['drop_reason'] != 'link_busy']}
                    bar.update(1)
            finally:
                sess.close()
            (out_dir / f'trace_{Path(fname).stem}.json').write_text(json.dumps(
                {'trace': fname, 'start_s': start_s, 'duration_s': dur, 'series': series}))
    sweep_csv = out_dir / 'sweep.csv'
    if sweep_csv.exists():
        sweep_rows = read_rows(sweep_csv)
        for fname, start_s, dur in traces:
            o = trace_oracle(sweep_rows, trace_rows(Path(trace_dir) / fname, start_s, dur), dur,
                             deadline_ms)
            if o is not None:
                o.update(trace=fname, start_s=start_s, duration_s=dur)
                rows_out.append(o)
    fields = ('trace', 'start_s', 'duration_s', 'policy', 'deadline_ms', 'frames', 'classified',
              'top1', 'expected_top1', 'deadline_met', 'useful', 'p50_ms', 'p95_ms', 'p99_ms',
              'switches', 'state_changes', 'big_drops', 'reacted', 'reaction_s', 'configs',
              'drops', 'robot_scale')
    path = out_dir / 'traces.csv'
    path.unlink(missing_ok=True)
    append_rows(path, rows_out, fields)
    return rows_out


# ------------------------------------------------------------------------------------------------
# Plots and report numbers

def make_plots(results: Optional[Path] = None) -> List[Path]:
    """Draw the sweep and trace PNGs from the results files (default: the user's results)."""
    results = results_out() if results is None else Path(results)
    out = []
    sweep_csv = results / 'sweep.csv'
    if sweep_csv.exists():
        rows = read_rows(sweep_csv)
        out.append(plot_sweep(rows, results / 'sweep.png'))
        frames_csv = results / 'sweep_frames.csv'
        if frames_csv.exists():
            frames = read_rows(frames_csv)
            bws = sorted({float(r['bandwidth_mbps']) for r in rows})
            pick = [bws[0], bws[len(bws) // 3], bws[(2 * len(bws)) // 3]] if len(bws) >= 3 \
                else bws
            dls = sorted({float(r['deadline_ms']) for r in rows})
            dl = 300.0 if 300.0 in dls else dls[len(dls) // 2]
            out.append(plot_cdfs(frames, results / 'sweep_cdf.png', pick, dl))
            out.append(plot_predicted(frames, results / 'sweep_predicted.png'))
    for js in sorted(results.glob('trace_*.json')):
        d = json.loads(js.read_text())
        if d.get('series'):
            out.append(plot_trace(d['series'], js.with_suffix('.png'),
                                  f'{d["trace"]} from {d["start_s"]} s, deadline '
                                  f'{next(iter(d["series"].values()))["deadline_ms"]:g} ms'))
    return out


# ------------------------------------------------------------------------------------------------
# Controller role (inside the robot namespace)

def _control(timeout_s: float) -> int:
    import rclpy
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient
    rclpy.init()
    node = rclpy.create_node('sweep_controller')
    out_lock = threading.Lock()

    def emit(rec: dict) -> None:
        with out_lock:
            print(json.dumps(rec), flush=True)

    record_topics(node, emit, decision_fields=DECISION_FIELDS + ('policy', 'reason'))
    clients = {name: AsyncParameterClient(node, name) for name in ('planner_node', 'camera_node')}
    cmds: 'queue.Queue[dict]' = queue.Queue()
    done = threading.Event()

    def read_stdin() -> None:
        for line in sys.stdin:
            try:
                cmds.put(json.loads(line))
            except ValueError:
                continue
        done.set()
    threading.Thread(target=read_stdin, daemon=True).start()

    def on_timer() -> None:
        while not cmds.empty():
            c = cmds.queue[0]
            client = clients.get(c.get('node', 'planner_node'))
            if c.get('cmd') != 'quit' and client is not None and not client.services_are_ready():
                return   # wait for that node's parameter service (commands stay in order)
            cmds.get()
            if c.get('cmd') == 'quit':
                done.set()
                return
            if client is None:
                emit({'topic': 'ack', 'id': c.get('id', 0), 'ok': False,
                      'reason': f'unknown node {c.get("node")!r}', 't': time.time()})
                continue
            params = [Parameter(k, value=v) for k, v in c.get('params', {}).items()]

            def answered(fut, cid=c.get('id', 0)) -> None:
                try:
                    res = fut.result().result
                    emit({'topic': 'ack', 'id': cid, 'ok': bool(res.successful),
                          'reason': res.reason, 't': time.time()})
                except Exception as exc:  # the service went away mid-call
                    emit({'topic': 'ack', 'id': cid, 'ok': False, 'reason': str(exc),
                          't': time.time()})
            client.set_parameters_atomically(params, callback=answered)
    node.create_timer(0.02, on_timer)
    spin_until(node, done.is_set, timeout_s)
    return 0


if __name__ == '__main__':
    if sys.argv[1:2] == ['_control']:
        raise SystemExit(_control(float(sys.argv[2])))
    raise SystemExit('usage: python -m edgent_ros.evaluation.sweep_session _control TIMEOUT_S')
