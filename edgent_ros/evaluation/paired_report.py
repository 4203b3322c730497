"""
Tables, intervals, claims and figures of a paired sweep (``edgent-ros sweep paired-report``).

Everything is computed from ``paired_frames.csv`` alone (``paired`` defines the statistics):
``paired_summary.csv`` (per bandwidth, deadline and policy: on-time accuracy with its 95 %
interval, on-time rate with Wilson's, mid-network cuts, configurations run, the oracle and the
best fixed configuration beside it), ``paired_claims.json`` (the paper's claims, holds / does not
hold), ``paired_report.md`` (the Markdown that BENCHMARKS quotes) and two PNGs.
"""

from __future__ import annotations

import json
from pathlib import Path
import statistics
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from .paired import (candidates, cell_stats, check_claims, claim_roles, config_name,
                     frame_config, grid_gain, meets, on_time, OracleSearch, oracle_rows,
                     paired_diff)
from .paired_session import (CALIBRATION_FILE, CONFIG_MEDIAN_FRAMES, config_of, config_ratios,
                             median_errors, META_FILE)
from .sweep import append_rows, DEFAULT_ROBOT_SCALE, read_rows, run_encodings
from .sweep_session import _enc_accuracy, planner_problem
from .testbed import DEFAULT_BURST_BYTES

SUMMARY_FIELDS = ('bandwidth_mbps', 'deadline_ms', 'policy', 'frames', 'reps', 'value',
                  'value_ci', 'met', 'met_lo', 'met_hi', 'meets', 'mid_cut_share', 'configs',
                  'oracle', 'oracle_top1', 'oracle_value', 'beats_oracle')


def _configs_of(frames: Sequence[Mapping[str, object]]) -> str:
    n: Dict[str, int] = {}
    for f in frames:
        if f.get('e2e_ms') is not None:
            k = config_name(frame_config(f, True))
            n[k] = n.get(k, 0) + 1
    return ';'.join(f'{k}:{v}' for k, v in sorted(n.items(), key=lambda kv: -kv[1]))


def build(out_dir: Path, robot_scale: float = DEFAULT_ROBOT_SCALE,
          burst_bytes: int = DEFAULT_BURST_BYTES) -> Dict[str, object]:
    """Compute the report of ``out_dir/paired_frames.csv``; write its files; return it."""
    out_dir = Path(out_dir)
    rows = read_rows(out_dir / 'paired_frames.csv')
    model: Optional[str] = None
    factor, link_burst = 1.0, 0
    latency: Optional[Path] = None     # the planner's block times (calibrate_robot's), if any
    meta = out_dir / META_FILE
    if meta.is_file():   # the run's model and robot class (absent: the AlexNet at robot_scale)
        m = json.loads(meta.read_text())
        model = m.get('model') or None      # a shipped model's name, or a description's path
        robot_scale = float(m['robot_scale'])
        factor = float(m.get('robot_factor', 1.0))   # the planner's model: robot_scale x factor
        link_burst = int(m.get('link_burst_bytes', 0))
        if m.get('robot_latency'):
            latency = out_dir / m['robot_latency']
    # a run with edgent+enc/+bn: the encoded configurations are in the oracle's space, and
    # frames sent encoded count their own measured top-1
    policies = sorted({r['policy'] for r in rows if r['kind'] == 'policy'})
    encs = run_encodings(policies, model)
    encoded = encs != ['raw']
    accuracy, problem = planner_problem(robot_scale * factor, encs, model=model,
                                        burst_bytes=link_burst, latency=latency)
    # the robot-time errors start from the profiled robot x robot_scale; the offline factor
    # (robot_calibration.json) is applied there, once
    static = problem if factor == 1.0 else planner_problem(robot_scale, encs, model=model)[1]
    accuracy = {int(k): float(v) for k, v in accuracy.items()}
    enc_accuracy = _enc_accuracy(model) if encoded else None
    bws = sorted({float(r['bandwidth_mbps']) for r in rows if r['kind'] == 'policy'})
    dls = sorted({float(r['deadline_ms']) for r in rows if r['kind'] == 'policy'})
    oracles: Dict[Tuple[float, float], Dict[str, object]] = {}
    alone: Dict[Tuple[float, float], Dict[str, Tuple[int, int]]] = {}
    for bw in bws:
        search = OracleSearch(candidates(problem, accuracy, bw, burst_bytes, encoded), dls)
        by: Dict[tuple, List[dict]] = {}
        for r in rows:
            if r['kind'] == 'config' and float(r['bandwidth_mbps']) == bw:
                by.setdefault(config_of(r['policy']), []).append(r)
        for c, fs in by.items():
            search.record(c, fs)
        for o in oracle_rows(search, bw):
            oracles[(bw, float(o['deadline_ms']))] = o
        for dl in dls:
            alone[(bw, dl)] = {config_name(c): on_time(fs, dl, c)
                               for c, fs in search.measured.items()}
    cells: Dict[Tuple[float, float], Dict[str, Dict[str, object]]] = {}
    summary = []
    for bw in bws:
        for dl in dls:
            fs = [r for r in rows if r['kind'] == 'policy' and float(r['bandwidth_mbps']) == bw
                  and float(r['deadline_ms']) == dl]
            if not fs:
                continue
            st = cell_stats(fs, accuracy, dl, enc_accuracy)
            cells[(bw, dl)] = st
            o = oracles.get((bw, dl), {})
            bound = float(o.get('oracle_top1') or 0.0)
            for pol, s in sorted(st.items()):
                mine = [f for f in fs if f['policy'] == pol]
                lo = s['value'] - (s['value_ci'] or 0.0)
                summary.append({
                    'bandwidth_mbps': bw, 'deadline_ms': dl, 'policy': pol,
                    'frames': s['frames'], 'reps': s['reps'], 'value': round(s['value'], 4),
                    'value_ci': None if s['value_ci'] is None else round(s['value_ci'], 4),
                    'met': round(s['met'], 4), 'met_lo': round(s['met_lo'], 4),
                    'met_hi': round(s['met_hi'], 4), 'meets': int(meets(s)),
                    'mid_cut_share': round(s['mid_cut'] / s['frames'], 4),
                    'configs': _configs_of(mine), 'oracle': o.get('oracle', ''),
                    'oracle_top1': o.get('oracle_top1'), 'oracle_value': o.get('oracle_value'),
                    'beats_oracle': int(meets(s) and lo > bound + 1e-9)})
    same, pairs = same_frames(rows)
    errors = model_errors([r for r in rows if r['kind'] == 'policy'], static, out_dir, rows,
                          measured=problem if latency is not None else None)
    path = out_dir / 'paired_summary.csv'
    path.unlink(missing_ok=True)
    append_rows(path, summary, SUMMARY_FIELDS)
    edgent, baselines = claim_roles(sorted({r['policy'] for r in summary}))
    claims = check_claims(cells, edgent, baselines) if edgent else []
    (out_dir / 'paired_claims.json').write_text(json.dumps(claims, indent=1) + '\n')
    rep = {'bandwidths': bws, 'deadlines': dls, 'summary': summary, 'claims': claims,
           'oracles': oracles, 'cells': cells, 'same_frames': same, 'pairs': pairs,
           'errors': errors, 'alone': alone}
    (out_dir / 'paired_report.md').write_text(markdown(rep) + '\n')
    plot(rep, out_dir)
    return rep


def _mape(pairs: Sequence[Tuple[float, float]]) -> Optional[float]:
    ok = [(p, m) for p, m in pairs if p is not None and m and m > 0]
    return sum(abs(p - m) / m for p, m in ok) / len(ok) if ok else None


def model_errors(rows: Sequence[Mapping[str, object]], problem, out_dir: Path,
                 every_frame: Optional[Sequence[Mapping[str, object]]] = None,
                 measured=None) -> Dict[str, object]:
    """
    Return the latency model's errors on the policy frames: static, offline-calibrated, online.

    Robot time: the static model (profiled layers x robot scale) and the same x the factor of
    ``robot_calibration.json`` (a separate device-only run, never these frames) against the
    measured ``device_ms``; beside them the floor, each configuration predicted by the median of
    its own frames (in-sample: what no static per-configuration model beats but by luck). End
    to end: the static model at the true bandwidth (``predicted_ms``) and the planner's
    online-calibrated prediction (``planner_ms``). Per configuration: the model's error on each
    configuration's median robot time (``config_median_errors``) over ``every_frame`` (the
    configurations measured alone as well as the policies; default ``rows``). ``measured``:
    the planner's problem of a run planned with the robot's block times measured through the
    emulation (``calibrate_robot``'s ``robot_latency.json``): its errors as ``robot_blocks``
    (per frame) and ``robot_config_blocks`` (per configuration's median).
    """
    groups = config_ratios(rows, problem)     # measured / modelled robot time per configuration
    ratios = [x for v in groups.values() for x in v]
    # the floor: each configuration predicted by the median of its own frames here (in-sample,
    # so no static model of the robot can do better on these frames but by luck)
    floor = [(statistics.median(v), x) for v in groups.values() for x in v]
    every = groups if every_frame is None else config_ratios(every_frame, problem)
    config_static, n_configs = median_errors(every)
    if measured is not None:   # the same grouping, against the measured block times
        m_groups = config_ratios(rows, measured)
        m_every = m_groups if every_frame is None else config_ratios(every_frame, measured)
    cal = Path(out_dir) / CALIBRATION_FILE
    factor = json.loads(cal.read_text())['factor'] if cal.is_file() else None
    out: Dict[str, object] = {
        'robot_frames': len(ratios),
        'robot_static': _mape([(1.0, r) for r in ratios]),
        'robot_median_ratio': statistics.median(ratios) if ratios else None,
        'factor': factor,
        'robot_offline': _mape([(factor, r) for r in ratios]) if factor else None,
        'robot_floor': _mape(floor),
        'robot_config_static': config_static,
        'robot_config_offline': median_errors(every, factor)[0] if factor else None,
        'robot_configs': n_configs,
        'robot_blocks': (_mape([(1.0, x) for v in m_groups.values() for x in v])
                         if measured is not None else None),
        'robot_config_blocks': median_errors(m_every)[0] if measured is not None else None,
        'e2e_static': _mape([(r.get('predicted_ms'), r.get('e2e_ms')) for r in rows]),
        'e2e_online': _mape([(r.get('planner_ms'), r.get('e2e_ms')) for r in rows])}
    return out


def same_frames(rows: Sequence[Mapping[str, object]]) -> Tuple[int, int]:
    """Return (policy pairs that saw the same images, pairs) per (bandwidth, deadline, rep)."""
    seqs: Dict[Tuple[float, float, int], Dict[str, Dict[int, object]]] = {}
    for r in rows:
        if r['kind'] == 'policy':
            key = (float(r['bandwidth_mbps']), float(r['deadline_ms']), int(r['rep']))
            seqs.setdefault(key, {}).setdefault(str(r['policy']), {})[
                int(r['frame_index'])] = r.get('true_class')
    same = pairs = 0
    for by in seqs.values():
        pols = sorted(by)
        for a, b in zip(pols, pols[1:]):
            common = sorted(set(by[a]) & set(by[b]))
            pairs += 1
            same += bool(common) and all(by[a][k] == by[b][k] for k in common)
    return same, pairs


def _why(rep: Mapping[str, object], row: Mapping[str, object]) -> str:
    """Say how the configurations a policy ran did when each was measured alone."""
    alone = rep['alone'].get((row['bandwidth_mbps'], row['deadline_ms']), {})
    parts = []
    for item in str(row['configs']).split(';'):
        cfg, _, n = item.partition(':')
        if cfg in alone:
            k, m = alone[cfg]
            parts.append(f'{cfg} ran {n} frames here, on time in {k} of {m} measured alone')
        elif cfg:
            parts.append(f'{cfg} ran {n} frames here, not measured alone')
    return ', '.join(parts)


def _pm(v, h) -> str:
    if v is None:
        return '–'
    return f'{v * 100:.1f}' + ('' if h is None else f' ± {h * 100:.1f}')


def headline(summary: Sequence[Mapping[str, object]]) -> str:
    """
    Return the one-paragraph summary the README quotes, from ``paired_summary.csv``'s rows.

    Per policy: the mean over cells of the on-time accuracy, and in how many cells it meets the
    deadline (99 % inside the on-time rate's Wilson interval).
    """
    by: Dict[str, List[Mapping[str, object]]] = {}
    for r in summary:
        by.setdefault(str(r['policy']), []).append(r)
    pols = sorted(by, key=lambda p: (p != 'edgent', -statistics.mean(
        float(r['value']) for r in by[p]), p))
    cells = {(float(r['bandwidth_mbps']), float(r['deadline_ms'])) for r in summary}
    bws = sorted({c[0] for c in cells})
    dls = sorted({c[1] for c in cells})
    reps = int(max(float(r['reps']) for r in summary))
    frames = int(max(float(r['frames']) for r in summary)) // max(reps, 1)
    accs = ', '.join(f'{p} {100 * statistics.mean(float(r["value"]) for r in by[p]):.1f} %'
                     for p in pols)
    met = ' / '.join(str(sum(int(float(r['meets'])) for r in by[p])) for p in pols)
    return (f'{len(cells)} cells ({len(bws)} bandwidths, '
            f'{", ".join(f"{b:g}" for b in bws)} Mbit/s × {len(dls)} deadlines, '
            f'{", ".join(f"{d:g}" for d in dls)} ms), {reps} repetitions × {frames} paired '
            f'frames: mean on-time accuracy {accs}; the deadline met (≥ 99 % of frames, '
            f'Wilson) in {met} of {len(cells)} cells, in that order.')


def markdown(rep: Mapping[str, object]) -> str:
    """Return the report's Markdown: per bandwidth a deadline x policy table, claims, cuts."""
    pols = sorted({r['policy'] for r in rep['summary']},
                  key=lambda p: (p != 'edgent', p))
    lines = []
    for bw in rep['bandwidths']:
        lines += [f'**{bw:g} Mbit/s**: on-time accuracy % (mean ± 95 % CI over repetitions; '
                  '`*` = meets the deadline: 99 % inside the on-time rate\'s Wilson interval)',
                  '', '| deadline (ms) | ' + ' | '.join(pols) + ' | oracle (≥ 99 %) |',
                  '|---' * (len(pols) + 2) + '|']
        for dl in rep['deadlines']:
            by = {r['policy']: r for r in rep['summary']
                  if r['bandwidth_mbps'] == bw and r['deadline_ms'] == dl}
            if not by:
                continue
            o = rep['oracles'].get((bw, dl), {})
            cells = [(_pm(by[p]['value'], by[p]['value_ci']) + (' *' if by[p]['meets'] else ''))
                     if p in by else '–' for p in pols]
            orc = (f'{o["oracle"]}: {o["oracle_value"] * 100:.1f}' if o.get('oracle')
                   else 'none meets it')
            lines.append(f'| {dl:g} | ' + ' | '.join(cells) + f' | {orc} |')
        lines.append('')
    er = rep['errors']

    def pc(x: Optional[float]) -> str:
        return '–' if x is None else f'{x * 100:.0f} %'
    lines += ['Latency model against these frames (MAPE): robot time, static model '
              f'{pc(er["robot_static"])} (live / model median '
              f'{er["robot_median_ratio"] or 0:.2f}, {er["robot_frames"]} frames), static x the '
              'offline factor of a separate device-only run '
              + (f'(x{er["factor"]:g}) {pc(er["robot_offline"])}' if er['factor'] else
                 '(no robot_calibration.json)')
              + '; each configuration predicted by the median of its own frames here (the '
              f'in-sample floor of any static model) {pc(er.get("robot_floor"))}'
              + '; on each configuration\'s median robot time (the model\'s own error; '
              f'{er.get("robot_configs", 0)} configurations with >= {CONFIG_MEDIAN_FRAMES} '
              'frames, measured alone or run by a policy), '
              f'static {pc(er.get("robot_config_static"))}'
              + (f', x the offline factor {pc(er.get("robot_config_offline"))}'
                 if er['factor'] else '')
              + (f'; the robot\'s block times measured through the emulation (the '
                 f'calibration\'s robot_latency.json, what the planner planned with) '
                 f'{pc(er["robot_blocks"])} per frame, {pc(er.get("robot_config_blocks"))} '
                 'on each configuration\'s median' if er.get('robot_blocks') is not None else '')
              + f'; end to end, static model {pc(er["e2e_static"])}, the planner online '
              f'(calibrated) {pc(er["e2e_online"])}.', '']
    lines += [f'Pairing: {rep["same_frames"]} of {rep["pairs"]} neighbouring policy pairs of '
              'a (bandwidth, deadline, repetition) saw the same image sequence (true classes '
              'frame by frame).', '', 'Claims of the paper, checked:', '']
    for c in rep['claims']:
        lines.append(f'- *{c["claim"]}*: **{c["verdict"]}** ({c["detail"]})')
    above = [r for r in rep['summary'] if r['beats_oracle']]
    lines += ['', 'Policies that meet the deadline with an on-time accuracy above the oracle\'s '
              'top-1 beyond their interval: ' + ('none' if not above else '; '.join(
                  f'{r["policy"]} at {r["bandwidth_mbps"]:g} Mbit/s, {r["deadline_ms"]:g} ms '
                  f'({r["value"] * 100:.1f} ± {(r["value_ci"] or 0) * 100:.1f} vs '
                  + (f'{r["oracle"]} {r["oracle_top1"] * 100:.1f}' if r['oracle'] else
                     'no configuration met it') + '; ' + _why(rep, r) + ')' for r in above))]
    mid = [r for r in rep['summary'] if r['mid_cut_share'] > 0]
    lines += ['', 'Frames cut mid-network (0 < split < branch length): '
              + ('none in any cell' if not mid else '; '.join(
                  f'{r["policy"]} {r["mid_cut_share"] * 100:.0f} % at '
                  f'{r["bandwidth_mbps"]:g} Mbit/s, {r["deadline_ms"]:g} ms' for r in mid))]
    diffs = []
    for (bw, dl), by in sorted(rep['cells'].items()):
        if 'edgent' in by and 'exit-only' in by:
            m, h, n = paired_diff(by['edgent']['values'], by['exit-only']['values'])
            if m is not None:
                diffs.append(f'{bw:g}/{dl:g}: {m * 100:+.1f} ± {(h or 0) * 100:.1f}')
    lines += ['', 'Edgent − exit-only, paired per frame (pt, Mbit/s / ms): ' + '; '.join(diffs)]
    pols = {p for by in rep['cells'].values() for p in by}
    if 'edgent+bn' in pols:   # issue 21 item 5: the gain over the run's cells
        gains = []
        for b in ('edgent+enc', 'exit-only'):
            m, h, k, n = grid_gain(rep['cells'], 'edgent+bn', b)
            if m is not None:
                gains.append(f'edgent+bn − {b} {m * 100:+.1f} ± {(h or 0) * 100:.1f} pt '
                             f'({n} cells, {k} repetitions)')
        lines += ['', 'On-time accuracy averaged over the cells, paired by repetition (95 % t): '
                  + ('; '.join(gains) or 'no baseline ran')]
    return '\n'.join(lines)


def plot(rep: Mapping[str, object], out_dir: Path) -> List[Path]:
    """Draw accuracy vs deadline (per bandwidth) and vs bandwidth (per deadline) PNGs."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    pols = sorted({r['policy'] for r in rep['summary']}, key=lambda p: (p != 'edgent', p))
    out = []
    for xkey, panel_key, name, xlabel in (
            ('deadline_ms', 'bandwidth_mbps', 'paired_vs_deadline.png', 'deadline (ms)'),
            ('bandwidth_mbps', 'deadline_ms', 'paired_vs_bandwidth.png', 'bandwidth (Mbit/s)')):
        panels = sorted({r[panel_key] for r in rep['summary']})
        fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.2),
                                 squeeze=False, sharey=True)
        for ax, pv in zip(axes[0], panels):
            for p in pols:
                rs = sorted((r for r in rep['summary'] if r[panel_key] == pv
                             and r['policy'] == p), key=lambda r: r[xkey])
                ax.errorbar([r[xkey] for r in rs], [r['value'] * 100 for r in rs],
                            yerr=[(r['value_ci'] or 0) * 100 for r in rs], marker='o',
                            ms=3, capsize=2, label=p, lw=2.2 if p == 'edgent' else 1.0)
            orc = sorted(((k[0] if xkey == 'bandwidth_mbps' else k[1]), o.get('oracle_value')
                          or 0.0) for k, o in rep['oracles'].items()
                         if (k[1] if xkey == 'bandwidth_mbps' else k[0]) == pv)
            ax.plot([x for x, _ in orc], [v * 100 for _, v in orc], 'k--', lw=1,
                    label='oracle (≥ 99 % on time)')
            if xkey == 'bandwidth_mbps':
                ax.set_xscale('log')
            ax.set_title(f'{pv:g} {"Mbit/s" if panel_key == "bandwidth_mbps" else "ms"}',
                         fontsize=9)
            ax.set_xlabel(xlabel)
            ax.set_ylim(-2, 100)
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel('on-time accuracy (%)')
        axes[0][-1].legend(fontsize=7, loc='lower right')
        fig.tight_layout()
        path = Path(out_dir) / name
        fig.savefig(path, dpi=110)
        plt.close(fig)
        out.append(path)
    return out
