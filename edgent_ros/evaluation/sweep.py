"""
Evaluation sweep (issue 6): grid, per-cell aggregation, the resumable results CSV and the plots.

Pure logic: no rclpy, no torch at import. ``evaluation.sweep_session`` runs the real nodes on the
link testbed and feeds the outcomes of each cell (one policy at one static bandwidth and one
deadline, or one policy over a trace replay) through ``aggregate``.

Definitions (also in BENCHMARKS.md):

* The camera runs closed-loop (``max_in_flight`` 1): a frame captured while the previous one is
  still on the link is skipped (``link_busy``) and is not part of the cell. Every other frame
  counts: classified (on the robot or the edge) or dropped with a reason.
* ``top1``: measured top-1 over the classified frames (labelled CIFAR-10 sample images).
  ``expected_top1``: the test-set (10,000 images) top-1 of the exit each classified frame used:
  the noise-free accuracy of the configurations chosen.
* ``deadline_met``: classified within the deadline / frames (a drop is a miss).
* ``useful``: correct and within the deadline / frames (measured; sampling noise).
* ``on_time_accuracy``: the test-set top-1 of the exit of each frame classified within the
  deadline, 0 for the others, averaged over the frames: accuracy delivered on time, without the
  sampling noise of 20 images (the comparisons use it).
* latency percentiles: end-to-end (capture to result) of the classified frames; the breakdown
  columns are medians; ``predicted_ms``: the latency model's prediction for the configuration at
  the true bandwidth, ``pred_ape``: mean absolute percentage error of that prediction;
  ``planner_ms`` / ``planner_ape``: the planner's own prediction (its latest decision of the
  frame's configuration before capture: estimated bandwidth, calibrated) and its error.
* ``edgent+enc`` (issue 9): the planner's Edgent policy with every tensor encoding allowed
  (``ENCODINGS_ALL``); a frame sent JPEG/int8/fp16 counts with the test-set top-1 measured for
  that (exit, split, encoding). The oracle and the baselines stay in the paper's space (raw
  tensors): the oracle's candidates are the raw configurations.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
import statistics
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from ..core.artifacts import ArtifactError, load_encodings
from ..core.codec import bottleneck_width, LOSSLESS
from ..core.model_desc import load_description
from ..core.model_plan import load_model_encodings

# Policies run live by the nodes ('true-bandwidth': the Edgent rule at the shaped rate, no
# estimate), and the oracle, computed offline from the measurements (``offline_oracle``).
LIVE_POLICIES = ('device-only', 'edge-only', 'partition-only', 'exit-only', 'edgent',
                 'true-bandwidth', 'edgent+enc', 'edgent+bn')
# only for sweep lossy: Edgent without the packet-loss repair model (a paired comparison)
LOSSY_ONLY_POLICIES = ('edgent-norepair',)
# 'edgent+enc': the planner's edgent policy with these encodings allowed (issue 9);
# 'edgent+bn': the same plus every learned bottleneck of the accuracy table (issue 21)
ENCODINGS_ALL = ('raw', 'fp16', 'int8', 'int8-zlib', 'compressed', 'png', 'jpeg')
SWEEP_POLICIES = LIVE_POLICIES + ('oracle',)
# Trace replays also run Edgent with the configuration map + change-point strategy (issue 10).
TRACE_POLICIES = LIVE_POLICIES + ('edgent-map',)
ORACLE_MIN_FRAMES = 10
# 8 log-spaced points, 50 kbit/s .. 10 Mbit/s (3 significant digits)
DEFAULT_BANDWIDTHS_MBPS = (0.05, 0.107, 0.227, 0.484, 1.03, 2.2, 4.69, 10.0)
DEFAULT_DEADLINES_MS = (100.0, 200.0, 300.0, 400.0, 600.0, 1000.0)
# The emulated robot: this many times slower than the profiled robot (a Raspberry-Pi-class CPU
# running the shipped model; see BENCHMARKS.md, "robot class").
DEFAULT_ROBOT_SCALE = 60.0

CSV_FIELDS = ('policy', 'bandwidth_mbps', 'deadline_ms', 'frames', 'top1', 'deadline_met',
              'p50_ms', 'p95_ms', 'p99_ms', 'exit', 'split', 'expected_top1', 'useful',
              'on_time_accuracy',
              'classified', 'drops', 'configs', 'device_ms', 'uplink_ms', 'edge_ms',
              'edge_queue_ms', 'predicted_ms', 'pred_ape', 'decisions', 'robot_scale',
              'elapsed_s', 'encoding', 'planner_ape')
FRAME_FIELDS = ('policy', 'bandwidth_mbps', 'deadline_ms', 'sequence', 'status', 'drop_reason',
                'where', 'exit', 'split', 'correct', 'e2e_ms', 'device_ms', 'uplink_ms', 'edge_ms',
                'predicted_ms', 'deadline_met', 'encoding', 'planner_ms')


def model_encodings(model: Optional[Path] = None) -> Dict[Tuple[int, int, str], Any]:
    """
    Return the measured encoding table of the AlexNet or of described model ``model``.

    A described model has one only after ``edgent-ros train-bottleneck --model`` (its JPEG frame
    and bottlenecks); empty when there is none.
    """
    try:
        if model:
            return load_model_encodings(load_description(model).files()['accuracy'])
        return load_encodings()
    except ArtifactError:
        return {}


def bottleneck_encodings(accuracy_path: Optional[Path] = None,
                         model: Optional[Path] = None) -> List[str]:
    """Return the bottleneck encodings (``bn<c>``) measured in the accuracy table."""
    try:
        keys = load_encodings(accuracy_path) if not model else model_encodings(model)
    except ArtifactError:
        return []
    return sorted({k[2] for k in keys if bottleneck_width(k[2]) is not None},
                  key=lambda n: bottleneck_width(n) or 0)


def policy_encodings(policy: str, model: Optional[Path] = None) -> List[str]:
    """
    Return the encodings sweep ``policy`` lets the planner choose.

    ``edgent+enc``: every codec (a described model: those its table measured, the JPEG frame);
    ``edgent+bn``: the same plus the learned bottlenecks; any other policy: raw tensors.
    """
    if policy not in ('edgent+enc', 'edgent+bn'):
        return ['raw']
    if model:
        table = model_encodings(model)
        plain = sorted({k[2] for k in table if bottleneck_width(k[2]) is None} - {'raw'})
        if not plain:
            raise ValueError(f'{policy} needs the measured encodings of {model} '
                             '(edgent-ros train-bottleneck --model)')
        encs = ['raw'] + plain
    else:
        encs = list(ENCODINGS_ALL)
    if policy == 'edgent+bn':
        names = bottleneck_encodings(model=model)
        if not names:
            raise ValueError('edgent+bn needs learned bottlenecks in the accuracy table '
                             '(edgent-ros train-bottleneck)')
        encs += names
    return encs


def run_encodings(policies: Iterable[str], model: Optional[Path] = None) -> List[str]:
    """Return every encoding the ``policies`` of one run may send (``['raw']``: none other)."""
    return list(dict.fromkeys(x for p in policies for x in policy_encodings(p, model)))


def all_encodings(model: Optional[Path] = None) -> List[str]:
    """Return every encoding a live policy of the sweep may send (for predictions)."""
    if model:
        table = model_encodings(model)
        return ['raw'] + sorted({k[2] for k in table} - {'raw'},
                                key=lambda n: (bottleneck_width(n) or 0, n))
    return list(ENCODINGS_ALL) + bottleneck_encodings()


def planner_params(policy: str, model: Optional[Path] = None) -> Dict[str, object]:
    """
    Return the planner parameters that run sweep ``policy`` (policy, encodings, rule).

    ``edgent-point`` is the Edgent policy deciding on the point estimate (``decision_rule
    point``: the planner before issue 17); every other policy uses the on-time-probability rule.
    ``edgent-norepair``: Edgent's rule without the packet-loss repair model (``repair_model``
    off: the planner before it), for paired comparisons on lossy links. ``model``: a described
    model, whose own measured encodings ``edgent+enc``/``edgent+bn`` use.
    """
    rule = {'decision_rule': 'point' if policy == 'edgent-point' else 'chance',
            'repair_model': policy != 'edgent-norepair'}
    if policy in ('edgent+enc', 'edgent+bn'):
        return {'policy': 'edgent', 'encodings': policy_encodings(policy, model), **rule}
    return {'policy': 'edgent' if policy in ('edgent-map', 'edgent-point', 'edgent-norepair')
            else policy,
            'encodings': ['raw'], **rule}


def frame_accuracy(accuracy: Mapping[int, float],
                   enc_accuracy: Optional[Mapping[Tuple[int, int, str], float]],
                   exit_index: int, split_index: int, encoding: Optional[str]) -> float:
    """Test-set top-1 of a frame's configuration: the exit's, or its lossy encoding's."""
    enc = encoding or 'raw'       # '' / None: a frame from before encodings existed = raw
    if enc not in LOSSLESS and enc_accuracy and (exit_index, split_index, enc) in enc_accuracy:
        return float(enc_accuracy[(exit_index, split_index, enc)])
    return float(accuracy[exit_index])


OK, DEVICE = 0, 1   # InferenceResult.STATUS_OK, FINISHED_ON_DEVICE


def check_grid(bandwidths: Sequence[float], deadlines: Sequence[float],
               policies: Sequence[str], allowed: Sequence[str] = LIVE_POLICIES) -> None:
    """Raise ValueError naming the first bad value of a sweep grid."""
    if not bandwidths or not deadlines or not policies:
        raise ValueError('a sweep needs at least one bandwidth, deadline and policy')
    for b in bandwidths:
        if not (isinstance(b, (int, float)) and math.isfinite(b) and b > 0):
            raise ValueError(f'bandwidths must be finite Mbit/s > 0, got {b!r}')
    for d in deadlines:
        if not (isinstance(d, (int, float)) and math.isfinite(d) and d > 0):
            raise ValueError(f'deadlines must be finite ms > 0, got {d!r}')
    for p in policies:
        if p not in allowed:
            raise ValueError(f'unknown policy {p!r}; expected one of {", ".join(allowed)} '
                             '(the oracle is computed from their measurements)')


def cell_key(policy: str, bandwidth_mbps: float, deadline_ms: float) -> Tuple[str, str, str]:
    """Return the key that identifies a cell in the CSV (formatted as written)."""
    return (policy, _fmt(bandwidth_mbps), _fmt(deadline_ms))


def _fmt(x: Optional[float]) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ''
    if isinstance(x, float):
        return f'{x:.6g}'
    return str(x)


def read_done(path: Path) -> set:
    """Return the keys of the cells already in the results CSV (empty if it does not exist)."""
    path = Path(path)
    if not path.exists():
        return set()
    with open(path, newline='') as f:
        reader = csv.DictReader(f)
        missing = {'policy', 'bandwidth_mbps', 'deadline_ms'} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f'{path}: not a sweep results CSV (missing columns '
                             f'{", ".join(sorted(missing))})')
        return {cell_key(r['policy'], float(r['bandwidth_mbps']), float(r['deadline_ms']))
                for r in reader}


def append_rows(path: Path, rows: Iterable[Mapping[str, object]],
                fields: Sequence[str] = CSV_FIELDS) -> None:
    """Append ``rows`` to a CSV (header written when new), flushed to disk: a crash loses none."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    with open(path, 'a', newline='') as f:
        w = csv.DictWriter(f, fieldnames=list(fields), extrasaction='ignore')
        if new:
            w.writeheader()
        for r in rows:
            w.writerow({k: _fmt(r.get(k)) for k in fields})
        f.flush()
        os.fsync(f.fileno())


def read_rows(path: Path) -> List[Dict[str, object]]:
    """Read a results CSV back with numbers as floats ('' -> None)."""
    out = []
    with open(path, newline='') as f:
        for r in csv.DictReader(f):
            row: Dict[str, object] = {}
            for k, v in r.items():
                if v == '':
                    row[k] = None
                    continue
                try:
                    row[k] = float(v)
                except ValueError:
                    row[k] = v
            out.append(row)
    return out


def percentile(xs: Sequence[float], q: float) -> Optional[float]:
    """Return the nearest-rank ``q`` quantile (``q`` in [0, 1]); None for no data."""
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, math.ceil(q * len(xs)) - 1))]


def in_cell(outcome: Mapping[str, object]) -> bool:
    """Return whether an outcome is one of the cell's frames (closed-loop skips are not)."""
    return not (outcome['status'] != OK and outcome.get('drop_reason') == 'link_busy')


def aggregate(outcomes: Sequence[Mapping[str, object]], accuracy: Mapping[int, float],
              predict: Optional[Callable[[int, int, str], float]] = None,
              decisions: Sequence[Mapping[str, object]] = (),
              enc_accuracy: Optional[Mapping[Tuple[int, int, str], float]] = None
              ) -> Tuple[Dict[str, object], List[Dict[str, object]]]:
    """
    Aggregate one cell's outcomes (recorder dicts) into a CSV row and per-frame rows.

    ``accuracy``: test-set top-1 per exit; ``enc_accuracy``: per (exit, split, encoding) for
    frames sent with a lossy encoding. ``predict(exit, split, encoding)``: predicted end-to-end
    ms at the cell's true bandwidth (None: no prediction columns).
    """
    def enc_of(o: Mapping[str, object]) -> str:
        return str(o.get('encoding') or 'raw') if o['status'] == OK and \
            o.get('finished_on') != DEVICE else 'raw'

    def acc_of(o: Mapping[str, object]) -> float:
        return frame_accuracy(accuracy, enc_accuracy, int(o['exit_index']),
                              int(o['split_index']), enc_of(o))
    frames = [o for o in outcomes if in_cell(o)]
    ok = [o for o in frames if o['status'] == OK]
    drops: Dict[str, int] = {}
    for o in frames:
        if o['status'] != OK:
            r = str(o.get('drop_reason') or 'unknown')
            drops[r] = drops.get(r, 0) + 1
    configs: Dict[Tuple[int, int, str], int] = {}
    for o in ok:
        c = (int(o['exit_index']), int(o['split_index']), enc_of(o))
        configs[c] = configs.get(c, 0) + 1
    # the planner's own prediction for a frame: its latest decision of that configuration
    # published before the frame was captured (it republishes when its prediction moves > 5 %)
    decs = sorted((d for d in decisions if d.get('predicted_total_ms') is not None
                   and d.get('stamp') is not None), key=lambda d: d['stamp'])

    def planner_ms(o: Mapping[str, object]) -> Optional[float]:
        key = (int(o['exit_index']), int(o['split_index']), enc_of(o))
        best = None
        for d in decs:
            if d['stamp'] > o['stamp']:
                break
            if (int(d['exit_index']), int(d['split_index']),
                    str(d.get('encoding') or 'raw')) == key:
                best = float(d['predicted_total_ms'])
        return best if best is not None and best > 0 else None
    per_frame = []
    preds, apes, p_apes = [], [], []
    for o in frames:
        pred = None
        if o['status'] == OK and predict is not None:
            pred = float(predict(int(o['exit_index']), int(o['split_index']), enc_of(o)))
            preds.append(pred)
            if o['end_to_end_ms'] > 0 and math.isfinite(pred):
                apes.append(abs(pred - o['end_to_end_ms']) / o['end_to_end_ms'])
        pl = planner_ms(o) if o['status'] == OK and 'stamp' in o else None
        if pl is not None and o['end_to_end_ms'] > 0:
            p_apes.append(abs(pl - o['end_to_end_ms']) / o['end_to_end_ms'])
        per_frame.append({
            'sequence': o['sequence'], 'status': o['status'],
            'drop_reason': o.get('drop_reason') or '',
            'where': '' if o['status'] != OK else 'device' if o['finished_on'] == DEVICE
            else 'edge',
            'exit': o['exit_index'], 'split': o['split_index'],
            'correct': int(o['status'] == OK and o['class_id'] == o['true_class_id']),
            'e2e_ms': round(float(o['end_to_end_ms']), 3) if o['status'] == OK else None,
            'device_ms': round(float(o['device_ms']), 3),
            'uplink_ms': round(float(o['uplink_ms']), 3),
            'edge_ms': round(float(o['edge_ms']), 3),
            'predicted_ms': round(pred, 3) if pred is not None else None,
            'deadline_met': int(o['status'] == OK and bool(o['deadline_met'])),
            'encoding': enc_of(o) if o['status'] == OK else '',
            'planner_ms': round(pl, 3) if pl is not None else None})
    e2e = [float(o['end_to_end_ms']) for o in ok]
    offloaded = [o for o in ok if o['finished_on'] != DEVICE]

    def med(xs: List[float]) -> Optional[float]:
        return round(statistics.median(xs), 3) if xs else None

    def rnd(x: Optional[float], n: int = 4) -> Optional[float]:
        return None if x is None else round(x, n)
    top = max(configs.items(), key=lambda kv: (kv[1], kv[0]))[0] if configs \
        else (None, None, None)
    n = len(frames)
    row = {
        'frames': n, 'classified': len(ok),
        'top1': rnd(sum(o['class_id'] == o['true_class_id'] for o in ok) / len(ok)) if ok
        else None,
        'expected_top1': rnd(sum(acc_of(o) for o in ok) / len(ok)) if ok else None,
        'deadline_met': rnd(sum(bool(o['deadline_met']) for o in ok) / n) if n else None,
        'useful': rnd(sum(bool(o['deadline_met']) and o['class_id'] == o['true_class_id']
                          for o in ok) / n) if n else None,
        'on_time_accuracy': rnd(sum(acc_of(o) for o in ok if o['deadline_met']) / n)
        if n else None,
        'p50_ms': rnd(percentile(e2e, 0.50), 2), 'p95_ms': rnd(percentile(e2e, 0.95), 2),
        'p99_ms': rnd(percentile(e2e, 0.99), 2),
        'exit': top[0], 'split': top[1], 'encoding': top[2],
        'configs': ';'.join(f'{e}/{s}{"" if x == "raw" else "/" + x}:{k}'
                            for (e, s, x), k in sorted(configs.items())),
        'drops': ';'.join(f'{r}:{k}' for r, k in sorted(drops.items())),
        'device_ms': med([float(o['device_ms']) for o in ok]),
        'uplink_ms': med([float(o['uplink_ms']) for o in offloaded]),
        'edge_ms': med([float(o['edge_ms']) for o in offloaded]),
        'edge_queue_ms': med([float(o['edge_queue_ms']) for o in offloaded]),
        'predicted_ms': med(preds), 'pred_ape': rnd(statistics.fmean(apes)) if apes else None,
        'planner_ape': rnd(statistics.fmean(p_apes)) if p_apes else None,
        'decisions': len(decisions),
    }
    return row, per_frame


# ------------------------------------------------------------------------------------------
# The oracle: the best configuration at each (bandwidth, deadline), from the measurements

def offline_oracle(frames: Sequence[Mapping[str, object]], accuracy: Mapping[int, float],
                   met_target: float = 0.99, min_frames: int = ORACLE_MIN_FRAMES
                   ) -> List[Dict[str, object]]:
    """
    Return one ``oracle`` row per (bandwidth, deadline) cell of the per-frame rows.

    At each bandwidth, every raw configuration (exit, split) that some live policy ran for at
    least ``min_frames`` frames (at any deadline) is a candidate with its measured latencies; for a
    deadline, the oracle takes the most accurate candidate (test-set top-1) whose frames met that
    deadline at a rate >= ``met_target`` (ties: higher rate, then lower median), or, when none
    does, the candidate with the highest rate. Its row reports that configuration's measured
    frames: the best any fixed configuration did at the true bandwidth, known after the fact.
    """
    pool: Dict[float, Dict[Tuple[int, int], List[Mapping]]] = {}
    grid = set()
    for f in frames:
        if f['policy'] == 'oracle' or f.get('exit') is None \
                or (f.get('encoding') or 'raw') != 'raw':
            continue   # the oracle searches the paper's space: raw tensors
        bw = float(f['bandwidth_mbps'])
        grid.add((bw, float(f['deadline_ms'])))
        pool.setdefault(bw, {}).setdefault((int(f['exit']), int(f['split'])), []).append(f)
    rows = []
    for bw, dl in sorted(grid):
        best = None
        for (e, s), fs in sorted(pool.get(bw, {}).items()):
            if len(fs) < min_frames:
                continue
            lat = [float(f['e2e_ms']) for f in fs if f['e2e_ms'] is not None]
            met = sum(x <= dl for x in lat) / len(fs)
            ok = met >= met_target
            key = (ok, accuracy[e] if ok else met, met if ok else accuracy[e],
                   -(statistics.median(lat) if lat else math.inf))
            if best is None or key > best[0]:
                best = (key, (e, s), fs, lat, met)
        if best is None:
            continue
        _, (e, s), fs, lat, met = best
        done = [f for f in fs if f['e2e_ms'] is not None]
        edge = [f for f in done if f.get('where') == 'edge']

        def med(xs: List[float]) -> Optional[float]:
            return round(statistics.median(xs), 3) if xs else None
        rows.append({
            'policy': 'oracle', 'bandwidth_mbps': bw, 'deadline_ms': dl, 'frames': len(fs),
            'classified': len(done), 'exit': e, 'split': s, 'configs': f'{e}/{s}:{len(fs)}',
            'top1': round(sum(int(f['correct']) for f in done) / len(done), 4) if done else None,
            'expected_top1': accuracy[e], 'deadline_met': round(met, 4),
            'useful': round(sum(int(f['correct']) and float(f['e2e_ms']) <= dl
                                for f in done) / len(fs), 4),
            'on_time_accuracy': round(accuracy[e] * met, 4),
            'p50_ms': percentile(lat, 0.5), 'p95_ms': percentile(lat, 0.95),
            'p99_ms': percentile(lat, 0.99),
            'device_ms': med([float(f['device_ms']) for f in done]),
            'uplink_ms': med([float(f['uplink_ms']) for f in edge]),
            'edge_ms': med([float(f['edge_ms']) for f in edge]),
            'predicted_ms': med([float(f['predicted_ms']) for f in done
                                 if f.get('predicted_ms') is not None]),
            'drops': ';'.join(sorted({str(f['drop_reason']) for f in fs
                                      if f['e2e_ms'] is None and f.get('drop_reason')})),
        })
    return rows


def trace_oracle(sweep_rows: Sequence[Mapping[str, object]],
                 segment: Sequence[Tuple[float, float]], duration_s: float,
                 deadline_ms: float) -> Optional[Dict[str, object]]:
    """
    Return the oracle of a trace replay, computed from the static sweep's oracle cells.

    Each second of the segment (``(t_s, mbps)`` steps) takes the oracle cell of the largest swept
    bandwidth at or below its rate (below the smallest, or an outage: the best device-only
    cell); the row averages their accuracy, deadline-met and useful rates over the seconds.
    None if the sweep has no oracle cells at ``deadline_ms``.
    """
    ora = {float(r['bandwidth_mbps']): r for r in sweep_rows
           if r['policy'] == 'oracle' and float(r['deadline_ms']) == deadline_ms}
    dev = [r for r in sweep_rows if r['policy'] == 'device-only'
           and float(r['deadline_ms']) == deadline_ms]
    if not ora or not dev:
        return None
    dev_best = max(dev, key=lambda r: (r.get('useful') or 0.0))
    bws = sorted(ora)
    picks = []
    steps = list(segment) + [(duration_s, None)]
    for (t0, rate), (t1, _) in zip(steps, steps[1:]):
        below = [b for b in bws if b <= rate]
        r = ora[below[-1]] if below else dev_best
        if below and (r.get('useful') or 0.0) < (dev_best.get('useful') or 0.0):
            r = dev_best   # a fixed device-only configuration needs no link at all
        picks += [r] * max(0, int(round(t1 - t0)))
    if not picks:
        return None

    def mean(key: str) -> Optional[float]:
        xs = [float(r[key]) for r in picks if r.get(key) is not None]
        return round(statistics.fmean(xs), 4) if xs else None
    configs: Dict[str, int] = {}
    for r in picks:
        c = f'{int(r["exit"])}/{int(r["split"])}'
        configs[c] = configs.get(c, 0) + 1
    return {'policy': 'oracle', 'deadline_ms': deadline_ms, 'top1': mean('top1'),
            'expected_top1': mean('expected_top1'), 'deadline_met': mean('deadline_met'),
            'useful': mean('useful'),
            'configs': ';'.join(f'{c}:{n}s' for c, n in sorted(configs.items()))}


def big_drops(rates: Sequence[Tuple[float, float]], factor: float = 2.0) -> List[float]:
    """Return the times at which the rate fell below 1/``factor`` of the previous step's."""
    return [t for (_, a), (t, b) in zip(rates, rates[1:]) if b < a / factor]


def reaction_times(drops: Sequence[float], decisions: Sequence[Tuple[float, int, int]],
                   horizon_s: float = 15.0) -> List[Optional[float]]:
    """
    Per drop: seconds until the decision in force first changed (None: not within horizon).

    ``decisions``: ``(t, exit, split)`` in time order (times on the same clock as ``drops``).
    """
    out: List[Optional[float]] = []
    for t in drops:
        before = [d for d in decisions if d[0] <= t]
        cur = (before[-1][1], before[-1][2]) if before else None
        nxt = next((d for d in decisions if t < d[0] <= t + horizon_s
                    and (d[1], d[2]) != cur), None)
        out.append(None if nxt is None else round(nxt[0] - t, 3))
    return out


# ------------------------------------------------------------------------------------------
# Targets and tables (for the report)

def cells(rows: Sequence[Mapping[str, object]]) -> Dict[Tuple[float, float], Dict[str, Mapping]]:
    """Group rows by (bandwidth, deadline) -> {policy: row}."""
    out: Dict[Tuple[float, float], Dict[str, Mapping]] = {}
    for r in rows:
        out.setdefault((float(r['bandwidth_mbps']), float(r['deadline_ms'])), {})[
            str(r['policy'])] = r
    return out


def add_on_time_accuracy(rows: List[Dict[str, object]], frames: Sequence[Mapping[str, object]],
                         accuracy: Mapping[int, float],
                         enc_accuracy: Optional[Mapping[Tuple[int, int, str], float]] = None
                         ) -> None:
    """Fill ``on_time_accuracy`` of live rows from their per-frame rows (older CSVs)."""
    acc: Dict[Tuple[str, float, float], List[float]] = {}
    for f in frames:
        key = (str(f['policy']), float(f['bandwidth_mbps']), float(f['deadline_ms']))
        ok = f['e2e_ms'] is not None and int(f['deadline_met'])
        acc.setdefault(key, []).append(frame_accuracy(
            accuracy, enc_accuracy, int(f['exit']), int(f['split']), f.get('encoding'))
            if ok else 0.0)
    for r in rows:
        key = (str(r['policy']), float(r['bandwidth_mbps']), float(r['deadline_ms']))
        if r['policy'] != 'oracle' and key in acc:
            r['on_time_accuracy'] = round(statistics.fmean(acc[key]), 4)


def check_targets(rows: Sequence[Mapping[str, object]], met_target: float = 0.99,
                  acc_key: str = 'expected_top1', only_meeting: bool = True
                  ) -> Dict[str, object]:
    """
    Check issue 6's targets cell by cell and return counts and the failing cells.

    * deadline: Edgent meets the deadline on >= ``met_target`` of frames in every cell where the
      oracle does;
    * accuracy: Edgent's ``acc_key`` >= every baseline's (among baselines that also meet the
      deadline on >= ``met_target``: an accuracy bought by missing the deadline does not count)
      and within 1 point of the oracle's.

    ``only_meeting`` False compares every baseline (for ``on_time_accuracy``, which already
    counts a late frame as 0).
    """
    by = cells(rows)
    res: Dict[str, object] = {'cells': 0, 'oracle_meets': 0, 'edgent_meets_where_oracle': 0,
                              'deadline_fail': [], 'acc_ge_baselines': 0, 'acc_fail': [],
                              'within_1pt_oracle': 0, 'oracle_fail': []}
    for (bw, dl), pol in sorted(by.items()):
        e = pol.get('edgent')
        if e is None:
            continue
        res['cells'] += 1
        o = pol.get('oracle')
        if o is not None and (o['deadline_met'] or 0) >= met_target:
            res['oracle_meets'] += 1
            if (e['deadline_met'] or 0) >= met_target:
                res['edgent_meets_where_oracle'] += 1
            else:
                res['deadline_fail'].append((bw, dl, e['deadline_met']))
        ea = e.get(acc_key) or 0.0
        worse = [p for p, r in pol.items()
                 if p not in ('edgent', 'oracle', 'true-bandwidth', 'edgent+enc', 'edgent+bn')
                 and (not only_meeting or (r['deadline_met'] or 0) >= met_target)
                 and (r.get(acc_key) or 0) > ea]
        if worse:
            res['acc_fail'].append((bw, dl, worse))
        else:
            res['acc_ge_baselines'] += 1
        if o is not None:
            if ea >= (o.get(acc_key) or 0.0) - 0.01:
                res['within_1pt_oracle'] += 1
            else:
                res['oracle_fail'].append((bw, dl, ea, o.get(acc_key)))
    return res


def encoding_gain(rows: Sequence[Mapping[str, object]], met_target: float = 0.99,
                  policy: str = 'edgent+enc', base: str = 'edgent') -> Dict[str, object]:
    """
    Compare ``policy`` with ``base`` cell by cell (issue 9's target: meets strictly more cells).

    Returns how many cells each meets the deadline on >= ``met_target`` of its frames, the cells
    only one of them meets, and the mean on-time accuracy of both over the shared cells.
    """
    by = cells(rows)
    both = [(k, pol) for k, pol in sorted(by.items()) if policy in pol and base in pol]

    def meets(r: Mapping[str, object]) -> bool:
        return (r.get('deadline_met') or 0.0) >= met_target

    def mean(p: str, key: str) -> Optional[float]:
        xs = [float(pol[p][key]) for _, pol in both if pol[p].get(key) is not None]
        return round(statistics.fmean(xs), 4) if xs else None
    return {'cells': len(both),
            f'{policy}_meets': sum(meets(pol[policy]) for _, pol in both),
            f'{base}_meets': sum(meets(pol[base]) for _, pol in both),
            'only_' + policy: [k for k, pol in both
                               if meets(pol[policy]) and not meets(pol[base])],
            'only_' + base: [k for k, pol in both
                             if meets(pol[base]) and not meets(pol[policy])],
            f'{policy}_on_time_accuracy': mean(policy, 'on_time_accuracy'),
            f'{base}_on_time_accuracy': mean(base, 'on_time_accuracy')}


def markdown_table(rows: Sequence[Mapping[str, object]], deadline_ms: float,
                   value: str = 'useful', policies: Sequence[str] = SWEEP_POLICIES) -> str:
    """Return a Markdown table: bandwidth rows x policy columns of ``value`` at one deadline."""
    by = cells(rows)
    bws = sorted({bw for bw, dl in by if dl == deadline_ms})
    head = '| Mbit/s | ' + ' | '.join(policies) + ' |\n|---|' + '---|' * len(policies) + '\n'
    lines = []
    for bw in bws:
        pol = by[(bw, deadline_ms)]
        vals = []
        for p in policies:
            r = pol.get(p)
            v = None if r is None else r.get(value)
            enc = '' if r is None or r.get('encoding') in (None, '', 'raw') \
                else f' {r["encoding"]}'
            cfg = '' if r is None or r.get('exit') is None else \
                f' ({int(r["exit"])}/{int(r["split"])}{enc})'
            vals.append('–' if v is None else f'{100 * float(v):.0f}{cfg}'
                        if value in ('useful', 'deadline_met', 'top1', 'expected_top1',
                                     'on_time_accuracy')
                        else f'{float(v):.0f}{cfg}')
        lines.append(f'| {bw:g} | ' + ' | '.join(vals) + ' |')
    return head + '\n'.join(lines) + '\n'


REPORT_POLICIES = ('device-only', 'edge-only', 'partition-only', 'exit-only', 'edgent',
                   'true-bandwidth', 'edgent+enc', 'oracle')


def summary_markdown(rows: Sequence[Mapping[str, object]],
                     policies: Sequence[str] = SWEEP_POLICIES) -> str:
    """Return the per-policy summary over all cells of ``sweep.csv``'s rows (a Markdown table)."""
    out = ['| policy | cells meeting the deadline on >= 99 % | mean deadline met | mean accuracy '
           '(test-set top-1 of the exits used) | mean on-time accuracy | mean correct and on '
           'time (measured) |', '|---|---|---|---|---|---|']
    for pol in policies:
        rs = [r for r in rows if r['policy'] == pol]
        if not rs:
            continue

        def mean(key):
            xs = [float(r[key]) for r in rs if r.get(key) is not None]
            return statistics.fmean(xs) if xs else float('nan')
        meets = sum((r['deadline_met'] or 0) >= 0.99 for r in rs)
        out.append(f'| {pol} | {meets} / {len(rs)} | {100 * mean("deadline_met"):.1f} % | '
                   f'{100 * mean("expected_top1"):.1f} % | '
                   f'{100 * mean("on_time_accuracy"):.1f} % | {100 * mean("useful"):.1f} % |')
    return '\n'.join(out) + '\n'


def trace_markdown(rows: Sequence[Mapping[str, object]]) -> str:
    """Return BENCHMARKS §8's trace-replay table from ``traces.csv``'s rows."""
    out = ['| trace | policy | frames | deadline met | accuracy (exits used) | correct and on '
           'time | p95 ms | switches | big drops: reacted, mean s |',
           '|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        def pct(k):
            return '–' if r.get(k) is None else f'{100 * float(r[k]):.1f} %'
        react = '–' if not r.get('big_drops') else \
            f'{int(r["reacted"] or 0)}/{int(r["big_drops"])}, ' + \
            ('–' if r.get('reaction_s') is None else f'{float(r["reaction_s"]):.1f}')
        frames = '–' if r.get('frames') is None else int(r['frames'])
        p95 = '–' if r.get('p95_ms') is None else f'{float(r["p95_ms"]):.0f}'
        sw = '–' if r.get('switches') is None else int(r['switches'])
        out.append(f'| {r["trace"]} | {r["policy"]} | {frames} | {pct("deadline_met")} | '
                   f'{pct("expected_top1")} | {pct("useful")} | {p95} | {sw} | {react} |')
    return '\n'.join(out) + '\n'


def benchmarks_block(rows: Sequence[Mapping[str, object]],
                     deadlines: Sequence[float] = (100.0, 200.0, 300.0, 400.0),
                     policies: Sequence[str] = REPORT_POLICIES) -> str:
    """Return BENCHMARKS §7's tables: on-time accuracy per deadline, then the summary."""
    parts = []
    for dl in deadlines:
        table = markdown_table(rows, dl, 'on_time_accuracy', policies)
        parts += [f'**Deadline {dl:g} ms**', '', table]
    cells_n = len({(float(r['bandwidth_mbps']), float(r['deadline_ms'])) for r in rows})
    parts += [f'Over all {cells_n} (bandwidth, deadline) cells:', '',
              summary_markdown(rows, policies)]
    return '\n'.join(parts).strip()


# ------------------------------------------------------------------------------------------
# Plots

COLORS = {'device-only': '#1f77b4', 'edge-only': '#ff7f0e', 'partition-only': '#2ca02c',
          'exit-only': '#9467bd', 'edgent': '#d62728', 'true-bandwidth': '#e377c2',
          'edgent-map': '#8c564b', 'oracle': '#555555', 'edgent+enc': '#17becf',
          'edgent+bn': '#bcbd22'}
STYLES = {'oracle': '--', 'edgent': '-', 'true-bandwidth': ':', 'edgent+enc': '-',
          'edgent+bn': '-'}


MARKERS = {'device-only': 's', 'edge-only': '^', 'partition-only': 'v', 'exit-only': 'D',
           'edgent': 'o', 'true-bandwidth': 'x', 'oracle': '+', 'edgent-map': '*',
           'edgent+enc': 'P', 'edgent+bn': 'X'}
YLIM = {'expected_top1': (75, 88), 'deadline_met': (-3, 103), 'on_time_accuracy': (-3, 90),
        'useful': (-3, 103)}


def plot_sweep(rows: Sequence[Mapping[str, object]], out_png: Path,
               metrics: Sequence[Tuple[str, str]] = (
                   ('expected_top1', 'accuracy: top-1 of\nthe exits used'),
                   ('deadline_met', 'deadline met'),
                   ('on_time_accuracy', 'on-time accuracy'))) -> Path:
    """Plot each metric vs bandwidth, one column per deadline, one line per policy."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    by = cells(rows)
    deadlines = sorted({dl for _, dl in by})
    policies = [p for p in SWEEP_POLICIES if any(str(r['policy']) == p for r in rows)]
    fig, axes = plt.subplots(len(metrics), len(deadlines), squeeze=False,
                             figsize=(3.0 * len(deadlines), 2.6 * len(metrics)), sharex=True)
    for j, dl in enumerate(deadlines):
        bws = sorted({bw for bw, d in by if d == dl})
        for i, (key, label) in enumerate(metrics):
            ax = axes[i][j]
            for k, p in enumerate(policies):
                ys = [by[(bw, dl)].get(p, {}).get(key) for bw in bws]
                pts = [(bw, 100 * y) for bw, y in zip(bws, ys) if y is not None]
                if pts:
                    # equal values overlap: markers of different shapes and sizes stay visible
                    ax.plot([x for x, _ in pts], [y for _, y in pts], STYLES.get(p, '-'),
                            marker=MARKERS.get(p, 'o'), ms=7 - 0.6 * k, mfc='none',
                            lw=1.6 if p == 'edgent' else 0.9, color=COLORS[p], label=p)
            if key in YLIM:
                ax.set_ylim(*YLIM[key])
            ax.set_xscale('log')
            ax.grid(alpha=0.3)
            if i == 0:
                ax.set_title(f'deadline {dl:g} ms', fontsize=9)
            if j == 0:
                ax.set_ylabel(f'{label} (%)', fontsize=8)
            if i == len(metrics) - 1:
                ax.set_xlabel('uplink (Mbit/s)', fontsize=8)
            ax.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=7, loc='lower right')
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def plot_cdfs(frames: Sequence[Mapping[str, object]], out_png: Path,
              bandwidths: Sequence[float], deadline_ms: float) -> Path:
    """Latency CDF per policy at a few bandwidths for one deadline (from per-frame rows)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(bandwidths), squeeze=False,
                             figsize=(3.4 * len(bandwidths), 2.8))
    for j, bw in enumerate(bandwidths):
        ax = axes[0][j]
        for p in SWEEP_POLICIES:
            xs = sorted(float(f['e2e_ms']) for f in frames
                        if f['policy'] == p and float(f['bandwidth_mbps']) == bw
                        and float(f['deadline_ms']) == deadline_ms and f['e2e_ms'] is not None)
            if xs:
                ax.step(xs, [(i + 1) / len(xs) for i in range(len(xs))], where='post',
                        color=COLORS[p], ls=STYLES.get(p, '-'), label=p)
        ax.axvline(deadline_ms, color='k', lw=0.8, ls=':')
        ax.set_xscale('log')
        from matplotlib.ticker import NullFormatter
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(f'{bw:g} Mbit/s, deadline {deadline_ms:g} ms', fontsize=9)
        ax.set_xlabel('end-to-end latency (ms)', fontsize=8)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel('CDF of classified frames', fontsize=8)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return Path(out_png)


def plot_predicted(frames: Sequence[Mapping[str, object]], out_png: Path) -> Path:
    """
    Scatter predicted vs measured end-to-end latency of every classified frame.

    Left: the static latency model at the true bandwidth; right (when the frames have it): the
    planner's own prediction (its bandwidth estimate, online calibration).
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    keys = [('predicted_ms', 'static model at the true bandwidth')]
    if any(f.get('planner_ms') is not None for f in frames):
        keys.append(('planner_ms', 'planner: estimate + calibration'))
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 4.0), squeeze=False)
    for ax, (key, title) in zip(axes[0], keys):
        for where, color in (('device', '#1f77b4'), ('edge', '#d62728')):
            pts = [(float(f[key]), float(f['e2e_ms'])) for f in frames
                   if f['e2e_ms'] is not None and f.get(key) is not None
                   and f['where'] == where]
            if pts:
                ax.scatter([p for p, _ in pts], [m for _, m in pts], s=4, alpha=0.35,
                           color=color, label=f'finished on {where} ({len(pts)} frames)')
        lo, hi = 1.0, 5000.0
        ax.plot([lo, hi], [lo, hi], 'k-', lw=0.8)
        ax.plot([lo, hi], [1.1 * lo, 1.1 * hi], 'k:', lw=0.6)
        ax.plot([lo, hi], [lo / 1.1, hi / 1.1], 'k:', lw=0.6)
        ax.set_xscale('log')
        ax.set_yscale('log')
        ax.set_xlabel('predicted (ms)')
        ax.set_ylabel('measured end-to-end (ms)')
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return Path(out_png)


def plot_trace(series: Mapping[str, Mapping[str, object]], out_png: Path, title: str) -> Path:
    """
    Plot the time series of one trace replay.

    Per policy: bandwidth (true and estimated), the exit used and the latency with the deadline.
    ``series[policy]``: {'rates': [(t, mbps)], 'estimate': [(t, mbps)], 'frames': [(t, e2e_ms or
    None, exit, split, met, drop_reason)], 'deadline_ms': float}.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    order = SWEEP_POLICIES + ('edgent-map',)
    pols = [p for p in order if p in series]
    fig, axes = plt.subplots(3, 1, figsize=(9, 7.5), sharex=True)
    first = series[pols[0]]
    rt = first['rates']
    if rt:
        xs, ys = zip(*rt)
        axes[0].step(xs, ys, where='post', color='k', lw=1.2, label='shaped rate (true)')
    for p in pols:
        est = series[p].get('estimate') or []
        if est and p in ('edgent', 'edgent-map'):
            xs, ys = zip(*est)
            axes[0].plot(xs, ys, '.', ms=2, color=COLORS[p], label=f'estimate ({p})')
        fr = series[p]['frames']
        if fr:
            off = 0.06 * (order.index(p) - 3)
            axes[1].plot([f[0] for f in fr], [f[2] + off for f in fr], '.', ms=2.5,
                         color=COLORS[p], label=p)
            done = [f for f in fr if f[1] is not None]
            axes[2].plot([f[0] for f in done], [f[1] for f in done], '.', ms=2.5,
                         color=COLORS[p], label=p)
    states = [(d[0], str(d[4]).split(' Mbit/s')[0]) for d in series.get('edgent-map', {}).get(
        'decisions', []) if len(d) > 4 and str(d[4]).startswith('map state')]
    changes = [t for (t, st), (_, prev) in zip(states[1:], states) if st != prev]
    for k, t in enumerate(changes):
        axes[0].axvline(t, color=COLORS['edgent-map'], lw=0.8, ls='--',
                        label='edgent-map: detected state change' if k == 0 else None)
    axes[2].axhline(float(first['deadline_ms']), color='k', ls=':', lw=1, label='deadline')
    axes[0].set_yscale('log')
    axes[0].set_ylabel('uplink (Mbit/s)')
    axes[0].legend(fontsize=7, ncol=3)
    axes[1].set_ylabel('exit used')
    axes[1].set_yticks([1, 2, 3, 4, 5])
    axes[1].legend(fontsize=7, ncol=3, markerscale=3)
    axes[2].set_yscale('log')
    axes[2].set_ylabel('end-to-end (ms)')
    axes[2].set_xlabel('trace time (s)')
    axes[0].set_title(title, fontsize=10)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return Path(out_png)
