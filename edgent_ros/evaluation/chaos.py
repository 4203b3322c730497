"""
Chaos soak (issue 20, item 5): a long trace replay with seeded kills, restarts and link cuts.

On the testbed (robot and edge namespaces joined by the user-space relay, so that a link cut is
the relay dropping every frame both ways), edge_node, planner_node (policy edgent) and the
robot's camera run while a real bandwidth trace is replayed for ``duration_s``. A seeded
schedule (``chaos_schedule``) of events, each kind at least once:

- ``kill_edge``: SIGKILL the edge (no goodbye on the DDS graph); start it again after a pause;
- ``kill_planner``: the same for the planner (the camera keeps its last decision meanwhile);
- ``restart_camera``: SIGTERM the camera (it ends every frame still on the robot or the link as a
  ``shutdown`` drop before it exits) and start it again: a new run of sequence numbers;
- ``cut_link``: the relay drops everything for the pause (``loss`` 1), then nothing.

Checked and reported (``soak_summary.json``, ``soak.md``, ``soak.png``):

- every frame of every camera run has exactly one outcome: sequence numbers 1..N without a gap
  or a duplicate (a SIGKILLed camera could not say; the camera is stopped with SIGTERM);
- after each event, how long until co-inference resumed (the first frame answered by the edge
  after the process is back or the link restored);
- resident memory of every process every few seconds: the slope of the longest-lived process
  of each kind after its first minute (MB/min), and its first and last values;
- processes: at no time more than one of a kind; none of ours left after the end;
- any process that exited without being told to (a crash) is counted, logged and restarted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
import json
import math
import os
from pathlib import Path
import random
import signal
import threading
import time
from typing import Dict, List, Optional, Sequence, Tuple

from ..core.paths import find_data
from .sweep import DEFAULT_ROBOT_SCALE
from .sweep_session import NodeSession, testbed_run, trace_rows
from .testbed import TracePlayer
from .testbed_session import executable, ros_args

KINDS = ('kill_edge', 'kill_planner', 'restart_camera', 'cut_link')
PAUSE_S = {'kill_edge': (3.0, 10.0), 'kill_planner': (2.0, 6.0), 'restart_camera': (2.0, 5.0),
           'cut_link': (3.0, 10.0)}
TARGET = {'kill_edge': 'edge_node', 'kill_planner': 'planner_node',
          'restart_camera': 'camera_node', 'cut_link': 'link'}
DEFAULT_TRACE = 'fcc-variable-2p6.csv'
SAMPLE_PERIOD_S = 5.0
# command-line fragments that mark one of our processes (nodes, emulated camera, controller)
OUR_MARKS = ('lib/edgent_ros/', 'edgent_ros.evaluation.emulated_camera',
             'edgent_ros.evaluation.sweep_session')


@dataclass
class ChaosEvent:
    """One fault: at ``t_s`` (s after the replay starts) ``kind`` for ``pause_s`` seconds."""

    t_s: float
    kind: str
    pause_s: float


def chaos_schedule(seed: int, duration_s: float, mean_gap_s: float = 35.0,
                   warmup_s: float = 30.0, tail_s: float = 30.0,
                   kinds: Sequence[str] = KINDS) -> List[ChaosEvent]:
    """
    Return the seeded events of a soak of ``duration_s`` seconds.

    Events start after ``warmup_s`` and end (pause included) ``tail_s`` before the end; gaps
    between one event's end and the next start are uniform in 0.5..1.5 x ``mean_gap_s``. Kinds
    come in shuffled rounds of all of ``kinds``, so each appears once before any repeats.
    """
    if duration_s <= warmup_s + tail_s:
        raise ValueError(f'duration_s {duration_s} leaves no time between the warm-up '
                         f'({warmup_s} s) and the tail ({tail_s} s)')
    unknown = set(kinds) - set(KINDS)
    if unknown or not kinds:
        raise ValueError(f'kinds must be among {KINDS}, got {list(kinds)}')
    rng = random.Random(seed)
    out: List[ChaosEvent] = []
    t = warmup_s
    bag: List[str] = []
    while True:
        if not bag:
            bag = list(kinds)
            rng.shuffle(bag)
        kind = bag.pop()
        lo, hi = PAUSE_S[kind]
        pause = round(rng.uniform(lo, hi), 1)
        if t + pause > duration_s - tail_s:
            return out
        out.append(ChaosEvent(round(t, 1), kind, pause))
        t += pause + rng.uniform(0.5, 1.5) * mean_gap_s


def split_runs(outcomes: Sequence[dict], starts: Sequence[float]) -> List[List[dict]]:
    """Assign each outcome (its arrival ``t``) to the camera run that started last before it."""
    starts = sorted(starts)
    runs: List[List[dict]] = [[] for _ in starts]
    for o in outcomes:
        k = max((i for i, s in enumerate(starts) if s <= o['t']), default=0)
        runs[k].append(o)
    return runs


def account(run: Sequence[dict]) -> Dict[str, int]:
    """Return a camera run's frames, outcomes, duplicate and missing sequence numbers."""
    seqs = [int(o['sequence']) for o in run]
    produced = max(seqs, default=0)
    return {'frames': produced, 'outcomes': len(seqs),
            'duplicates': len(seqs) - len(set(seqs)),
            'missing': len(set(range(1, produced + 1)) - set(seqs))}


def recovery_s(end_wall: float, outcomes: Sequence[dict]) -> Optional[float]:
    """Return seconds from ``end_wall`` to the first frame answered by the edge after it."""
    after = [o['t'] for o in outcomes if o['t'] >= end_wall and o['status'] == 0
             and o['finished_on'] == 0]
    return (min(after) - end_wall) if after else None


def rss_mb(pid: int) -> Optional[float]:
    """Return the resident memory of process ``pid`` in MB (None once it is gone)."""
    try:
        for line in Path(f'/proc/{pid}/status').read_text().splitlines():
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def _domain_of(pid: int) -> Optional[str]:
    """Return the ``ROS_DOMAIN_ID`` in process ``pid``'s environment (None if unreadable)."""
    try:
        env = Path(f'/proc/{pid}/environ').read_bytes().split(b'\0')
    except OSError:
        return None
    for item in env:
        if item.startswith(b'ROS_DOMAIN_ID='):
            return item.split(b'=', 1)[1].decode(errors='replace')
    return None


def our_processes(domain_id: Optional[str] = None) -> List[Tuple[int, str]]:
    """
    Return (pid, command line) of every running process of ours (nodes, controller).

    With ``domain_id``, only those on that ROS domain: a run's own, not another run's or a test's
    on the same machine.
    """
    out = []
    for d in Path('/proc').iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmd = (d / 'cmdline').read_bytes().replace(b'\0', b' ').decode(errors='replace')
        except OSError:
            continue
        if any(m in cmd for m in OUR_MARKS) and (
                domain_id is None or _domain_of(int(d.name)) == str(domain_id)):
            out.append((int(d.name), cmd.strip()))
    return out


def memory_summary(samples: Sequence[Tuple[float, str, int, float]],
                   settle_s: float = 60.0) -> Dict[str, dict]:
    """
    Summarize (t, name, pid, MB) samples per process kind, from its longest-lived incarnation.

    ``slope_mb_per_min``: least-squares slope of its samples after its first ``settle_s``
    (start-up allocations excluded); None with fewer than 3 such samples.
    """
    by: Dict[Tuple[str, int], List[Tuple[float, float]]] = {}
    for t, name, pid, mb in samples:
        by.setdefault((name, pid), []).append((t, mb))
    out: Dict[str, dict] = {}
    for (name, pid), pts in by.items():
        life = pts[-1][0] - pts[0][0]
        if name in out and out[name]['lived_s'] >= life:
            continue
        late = [(t, mb) for t, mb in pts if t - pts[0][0] >= settle_s]
        slope = None
        if len(late) >= 3:
            ts = [t for t, _ in late]
            ms = [mb for _, mb in late]
            tm, mm = sum(ts) / len(ts), sum(ms) / len(ms)
            var = sum((t - tm) ** 2 for t in ts)
            slope = (sum((t - tm) * (m - mm) for t, m in zip(ts, ms)) / var * 60.0) if var \
                else 0.0
        out[name] = {'pid': pid, 'lived_s': round(life, 1), 'first_mb': round(pts[0][1], 1),
                     'last_mb': round(pts[-1][1], 1),
                     'max_mb': round(max(mb for _, mb in pts), 1),
                     'incarnations': len({p for n, p in by if n == name}),
                     'slope_mb_per_min': None if slope is None else round(slope, 3)}
    return out


class _Sampler:
    """Every ``period_s``: each node process's RSS, and how many of ours run per kind."""

    def __init__(self, sess, period_s: float = SAMPLE_PERIOD_S):
        self.sess, self.period_s = sess, period_s
        self.samples: List[Tuple[float, str, int, float]] = []
        self.max_per_kind: Dict[str, int] = {}
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        t0 = time.time()
        while not self._stop.wait(self.period_s):
            now = time.time() - t0
            for name, p in list(self.sess.procs.items()):
                mb = rss_mb(p.pid) if p.poll() is None else None
                if mb is not None:
                    self.samples.append((now, name, p.pid, mb))
            kinds: Dict[str, int] = {}
            for _, cmd in our_processes(self.sess.env['ROS_DOMAIN_ID']):
                head = cmd.split('--ros-args')[0]   # the program, not its parameters
                kind = next((k for k in ('edge_node', 'planner_node', 'camera',
                                         'sweep_session') if k in head), 'other')
                kinds[kind] = kinds.get(kind, 0) + 1
            for k, n in kinds.items():
                self.max_per_kind[k] = max(self.max_per_kind.get(k, 0), n)

    def start(self) -> '_Sampler':
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(self.period_s + 5.0)


def run_soak(out_dir: Path, duration_s: float = 600.0, seed: int = 0,
             trace: str = DEFAULT_TRACE, deadline_ms: float = 300.0,
             robot_scale: Optional[float] = None, mean_gap_s: float = 35.0,
             name: str = 'edgsoak', logdir: Optional[Path] = None,
             trace_dir: Optional[Path] = None) -> dict:
    """Run the soak; write ``soak_summary.json``, ``soak.md`` and ``soak.png`` in ``out_dir``."""
    robot_scale = DEFAULT_ROBOT_SCALE if robot_scale is None else float(robot_scale)
    trace_dir = find_data('traces') if trace_dir is None else Path(trace_dir)
    rows = trace_rows(trace_dir / trace, 0.0, 1e9)
    events = chaos_schedule(seed, duration_s, mean_gap_s)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    logdir = Path(logdir or (Path('/tmp') / f'edgent-soak-{int(time.time())}'))
    log: List[dict] = []
    crashes: List[dict] = []
    with testbed_run(name, rows[0][1], len(events) + 1, 'soak', relay=True,
                     relay_seed=seed) as (tb, bar):
        sess = NodeSession(tb, robot_scale, logdir, camera={'result_timeout_s': 3.0,
                                                            'edge_timeout_s': 3.0})
        sampler = None
        try:
            sess.start(rows[0][1])
            planned = dict(policy='edgent', deadline_ms=float(deadline_ms))
            sess.set_planner(**planned)
            # a restarted planner starts as it runs now, not as the warm-up started it
            which, _, cgroup = sess.specs['planner_node']
            sess.specs['planner_node'] = (which, [executable('planner_node'), *ros_args(
                dict(sess.planner, **planned))], cgroup)
            camera_starts = [0.0]
            down: Dict[str, float] = {}
            player = TracePlayer(rows, loop=True)
            sampler = _Sampler(sess).start()
            t0 = time.time()
            th, stop = player.start(tb.set_rate, duration_s)

            def wait_until(t_rel: float) -> None:
                while time.time() < t0 + t_rel:
                    sess.pump(0.2)
                    for n, p in sess.procs.items():   # a crash: counted, logged, restarted
                        if n != 'controller' and n not in down and p.poll() is not None:
                            crashes.append({'t_s': round(time.time() - t0, 1), 'process': n,
                                            'code': p.returncode})
                            sess.restart(n)
                            if n == 'camera_node':
                                camera_starts.append(time.time())

            for ev in events:
                wait_until(ev.t_s)
                bar.set_postfix_str(f'{ev.kind} at {ev.t_s:.0f} s')
                target = TARGET[ev.kind]
                start = time.time()
                if ev.kind == 'cut_link':
                    tb.set_impairment(loss=1.0)
                else:
                    down[target] = start
                    sess.kill(target, signal.SIGTERM if target == 'camera_node'
                              else signal.SIGKILL)
                wait_until(start - t0 + ev.pause_s)
                if ev.kind == 'cut_link':
                    tb.set_impairment(loss=0.0)
                else:
                    sess.restart(target)
                    down.pop(target)
                    if target == 'camera_node':
                        camera_starts.append(time.time())
                log.append({**asdict(ev), 'start_wall': start, 'end_wall': time.time()})
                bar.update(1)
            wait_until(duration_s)
            stop.set()
            th.join(5.0)
            down['camera_node'] = time.time()
            sess.kill('camera_node', signal.SIGTERM)   # its last frames end as shutdown drops
            end = time.time() + 5.0
            while time.time() < end:
                sess.pump(0.2)
            bar.update(1)
        finally:
            if sampler is not None:
                sampler.stop()
            codes = sess.close()
            leftover = [(pid, cmd) for pid, cmd in our_processes(sess.env['ROS_DOMAIN_ID'])
                        if 'edgent_ros.evaluation.relay' not in cmd]
    outcomes = [r for r in sess.records if r['topic'] == 'outcome']
    runs = split_runs(outcomes, camera_starts)
    body = {
        'command': f'edgent-ros sweep soak --duration-s {duration_s:g} --seed {seed} '
                   f'--trace {trace} --deadline-ms {deadline_ms:g}',
        'duration_s': duration_s, 'seed': seed, 'trace': trace, 'deadline_ms': deadline_ms,
        'robot_scale': robot_scale, 't0_wall': t0,
        'events': [{**{k: v for k, v in e.items() if not k.endswith('_wall')},
                    'resumed_after_s': _round(recovery_s(e['end_wall'], outcomes))}
                   for e in log],
        'runs': [account(r) for r in runs],
        'outcome_kinds': _kinds(outcomes),
        'crashes': crashes,
        'memory': memory_summary(sampler.samples) if sampler else {},
        'max_processes_per_kind': sampler.max_per_kind if sampler else {},
        'exit_codes': codes, 'leftover_processes': [cmd for _, cmd in leftover],
    }
    body['all_accounted'] = all(r['duplicates'] == 0 and r['missing'] == 0
                                for r in body['runs'])
    body['timeline'] = [(round(o['t'] - t0, 2), o['status'], o['finished_on'],
                         o['drop_reason']) for o in outcomes]
    body['rss'] = [(round(t, 1), n, round(mb, 1)) for t, n, _, mb in
                   (sampler.samples if sampler else [])]
    (out_dir / 'soak_summary.json').write_text(json.dumps(body) + '\n')
    (out_dir / 'soak.md').write_text(soak_markdown(body) + '\n')
    plot_soak(body, out_dir / 'soak.png')
    return body


def _round(x: Optional[float]) -> Optional[float]:
    return None if x is None else round(x, 2)


def _kinds(outcomes: Sequence[dict]) -> Dict[str, int]:
    out: Dict[str, int] = {}
    for o in outcomes:
        k = ('edge' if o['finished_on'] == 0 else 'robot') if o['status'] == 0 \
            else f'{"refused" if o["status"] == 2 else "dropped"}:{o["drop_reason"]}'
        out[k] = out.get(k, 0) + 1
    return dict(sorted(out.items()))


def soak_markdown(body: dict) -> str:
    """Return the BENCHMARKS tables of a soak summary."""
    runs = body['runs']
    lines = [f'Trace `{body["trace"]}`, {body["duration_s"]:g} s, seed {body["seed"]}, deadline '
             f'{body["deadline_ms"]:g} ms; {len(body["events"])} events, {len(runs)} camera '
             f'runs, {sum(r["frames"] for r in runs)} frames, '
             f'{sum(r["outcomes"] for r in runs)} outcomes, '
             f'{sum(r["duplicates"] for r in runs)} duplicates, '
             f'{sum(r["missing"] for r in runs)} missing; crashes {len(body["crashes"])}; '
             f'processes of ours left after the end: {len(body["leftover_processes"])}.', '',
             '| t (s) | event | pause (s) | co-inference resumed after (s) |', '|---|---|---|---|']
    for e in body['events']:
        r = e['resumed_after_s']
        lines.append(f'| {e["t_s"]:.0f} | {e["kind"]} | {e["pause_s"]:g} | '
                     f'{"never" if r is None else f"{r:.1f}"} |')
    lines += ['', '| outcome | frames |', '|---|---|']
    lines += [f'| {k} | {v} |' for k, v in body['outcome_kinds'].items()]
    lines += ['', '| process | incarnations | longest lived (s) | RSS first / last / max (MB) | '
              'slope after 1 min (MB/min) | most at once |', '|---|---|---|---|---|---|']
    most = body['max_processes_per_kind']
    for n, m in sorted(body['memory'].items()):
        kind = 'camera' if n.startswith('camera') else ('sweep_session' if n == 'controller'
                                                        else n)
        slope = '-' if m['slope_mb_per_min'] is None else f'{m["slope_mb_per_min"]:+.2f}'
        lines.append(f'| {n} | {m["incarnations"]} | {m["lived_s"]:.0f} | {m["first_mb"]:.0f} / '
                     f'{m["last_mb"]:.0f} / {m["max_mb"]:.0f} | {slope} | '
                     f'{most.get(kind, 0)} |')
    return '\n'.join(lines)


def plot_soak(body: dict, path: Path) -> None:
    """Outcomes per 5 s (edge, robot, dropped) with the events shaded; RSS per process."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, (a0, a1) = plt.subplots(2, 1, figsize=(11, 6), sharex=True)
    n_bins = int(math.ceil(body['duration_s'] / 5.0)) + 2
    counts = {k: [0] * n_bins for k in ('edge', 'robot', 'dropped')}
    for t, status, finished_on, _ in body['timeline']:
        b = min(n_bins - 1, max(0, int(t // 5)))
        k = ('edge' if finished_on == 0 else 'robot') if status == 0 else 'dropped'
        counts[k][b] += 1
    xs = [5 * b for b in range(n_bins)]
    bottom = [0] * n_bins
    for k, c in (('edge', 'C0'), ('robot', 'C2'), ('dropped', 'C3')):
        a0.bar(xs, counts[k], width=5, bottom=bottom, color=c, label=k, align='edge')
        bottom = [a + b for a, b in zip(bottom, counts[k])]
    colours = {'kill_edge': 'red', 'kill_planner': 'orange', 'restart_camera': 'purple',
               'cut_link': 'gray'}
    for e in body['events']:
        for ax in (a0, a1):
            ax.axvspan(e['t_s'], e['t_s'] + e['pause_s'], color=colours[e['kind']], alpha=0.25)
    a0.set(ylabel='frames per 5 s', title='outcomes (shaded: ' + ', '.join(
        f'{k} {c}' for k, c in colours.items()) + ')')
    a0.legend(fontsize=7, loc='lower right')
    names = sorted({n for _, n, _ in body['rss']})
    for k, n in enumerate(names):
        pts = [(t, mb) for t, m, mb in body['rss'] if m == n]
        a1.plot([t for t, _ in pts], [mb for _, mb in pts], '.', ms=3, color=f'C{k}', label=n)
    a1.set(xlabel='s since the replay started', ylabel='RSS (MB)')
    a1.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
