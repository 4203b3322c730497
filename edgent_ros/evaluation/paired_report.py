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
from typing import Dict, List, Mapping, Sequence, Tuple

from .paired import (candidates, cell_stats, check_claims, meets, OracleSearch, oracle_rows,
                     paired_diff)
from .sweep import append_rows, DEFAULT_ROBOT_SCALE, read_rows
from .sweep_session import planner_problem
from .testbed import DEFAULT_BURST_BYTES

SUMMARY_FIELDS = ('bandwidth_mbps', 'deadline_ms', 'policy', 'frames', 'reps', 'value',
                  'value_ci', 'met', 'met_lo', 'met_hi', 'meets', 'mid_cut_share', 'configs',
                  'oracle', 'oracle_value', 'best_fixed', 'best_fixed_value', 'above_bound')


def _configs_of(frames: Sequence[Mapping[str, object]]) -> str:
    n: Dict[str, int] = {}
    for f in frames:
        if f.get('e2e_ms') is not None:
            k = f'{int(f["exit"])}/{int(f["split"])}'
            n[k] = n.get(k, 0) + 1
    return ';'.join(f'{k}:{v}' for k, v in sorted(n.items(), key=lambda kv: -kv[1]))


def build(out_dir: Path, robot_scale: float = DEFAULT_ROBOT_SCALE,
          burst_bytes: int = DEFAULT_BURST_BYTES) -> Dict[str, object]:
    """Compute the report of ``out_dir/paired_frames.csv``; write its files; return it."""
    out_dir = Path(out_dir)
    rows = read_rows(out_dir / 'paired_frames.csv')
    accuracy, problem = planner_problem(robot_scale)
    accuracy = {int(k): float(v) for k, v in accuracy.items()}
    bws = sorted({float(r['bandwidth_mbps']) for r in rows if r['kind'] == 'policy'})
    dls = sorted({float(r['deadline_ms']) for r in rows if r['kind'] == 'policy'})
    oracles: Dict[Tuple[float, float], Dict[str, object]] = {}
    for bw in bws:
        search = OracleSearch(candidates(problem, accuracy, bw, burst_bytes), dls)
        by: Dict[Tuple[int, int], List[dict]] = {}
        for r in rows:
            if r['kind'] == 'config' and float(r['bandwidth_mbps']) == bw:
                e, s = str(r['policy']).split(':')[1].split('/')
                by.setdefault((int(e), int(s)), []).append(r)
        for c, fs in by.items():
            search.record(c, fs)
        for o in oracle_rows(search, bw):
            oracles[(bw, float(o['deadline_ms']))] = o
    cells: Dict[Tuple[float, float], Dict[str, Dict[str, object]]] = {}
    summary = []
    for bw in bws:
        for dl in dls:
            fs = [r for r in rows if r['kind'] == 'policy' and float(r['bandwidth_mbps']) == bw
                  and float(r['deadline_ms']) == dl]
            if not fs:
                continue
            st = cell_stats(fs, accuracy, dl)
            cells[(bw, dl)] = st
            o = oracles.get((bw, dl), {})
            bound = float(o.get('best_fixed_value') or 0.0)
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
                    'oracle_value': o.get('oracle_value'), 'best_fixed': o.get('best_fixed', ''),
                    'best_fixed_value': o.get('best_fixed_value'),
                    'above_bound': int(lo > bound + 1e-9)})
    same, pairs = same_frames(rows)
    path = out_dir / 'paired_summary.csv'
    path.unlink(missing_ok=True)
    append_rows(path, summary, SUMMARY_FIELDS)
    claims = check_claims(cells)
    (out_dir / 'paired_claims.json').write_text(json.dumps(claims, indent=1) + '\n')
    rep = {'bandwidths': bws, 'deadlines': dls, 'summary': summary, 'claims': claims,
           'oracles': oracles, 'cells': cells, 'same_frames': same, 'pairs': pairs}
    (out_dir / 'paired_report.md').write_text(markdown(rep) + '\n')
    plot(rep, out_dir)
    return rep


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


def _pm(v, h) -> str:
    if v is None:
        return '–'
    return f'{v * 100:.1f}' + ('' if h is None else f' ± {h * 100:.1f}')


def markdown(rep: Mapping[str, object]) -> str:
    """Return the report's Markdown: per bandwidth a deadline x policy table, claims, cuts."""
    pols = sorted({r['policy'] for r in rep['summary']},
                  key=lambda p: (p != 'edgent', p))
    lines = []
    for bw in rep['bandwidths']:
        lines += [f'**{bw:g} Mbit/s**: on-time accuracy % (mean ± 95 % CI over repetitions; '
                  '`*` = meets the deadline: 99 % inside the on-time rate\'s Wilson interval)',
                  '', '| deadline (ms) | ' + ' | '.join(pols) + ' | oracle (≥ 99 %) | best '
                  'fixed |', '|---' * (len(pols) + 3) + '|']
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
            best = (f'{o["best_fixed"]}: {o["best_fixed_value"] * 100:.1f}'
                    if o.get('best_fixed') else '–')
            lines.append(f'| {dl:g} | ' + ' | '.join(cells) + f' | {orc} | {best} |')
        lines.append('')
    lines += [f'Pairing: {rep["same_frames"]} of {rep["pairs"]} neighbouring policy pairs of '
              'a (bandwidth, deadline, repetition) saw the same image sequence (true classes '
              'frame by frame).', '', 'Claims of the paper, checked:', '']
    for c in rep['claims']:
        lines.append(f'- *{c["claim"]}*: **{c["verdict"]}** ({c["detail"]})')
    above = [r for r in rep['summary'] if r['above_bound']]
    lines += ['', 'Policies above the best fixed configuration beyond their interval: '
              + ('none' if not above else '; '.join(
                  f'{r["policy"]} at {r["bandwidth_mbps"]:g} Mbit/s, {r["deadline_ms"]:g} ms '
                  f'({r["value"] * 100:.1f} vs {r["best_fixed_value"] * 100:.1f})'
                  for r in above))]
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
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel('on-time accuracy (%)')
        axes[0][-1].legend(fontsize=7, loc='lower right')
        fig.tight_layout()
        path = Path(out_dir) / name
        fig.savefig(path, dpi=110)
        plt.close(fig)
        out.append(path)
    return out
