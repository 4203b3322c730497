"""
What DDS Security costs on the link: one ``edgent_ros/Tensor`` across the testbed, plain vs SROS2.

Issue 20 item 3. Three configurations of the same publisher/subscriber pair
(``bench/transfer_bench.py``'s roles, robot and edge namespaces, tbf-shaped uplink,
``config/fastdds_testbed.xml``):

- ``plain``: the PyPI Fast DDS (security compiled out), as every node runs by default;
- ``plain-securebuild``: the Fast DDS built with security (third_party/secure_fastdds), security
  off: isolates what the other build changes;
- ``secure``: that build with ``ROS_SECURITY_ENABLE=true``, ``ROS_SECURITY_STRATEGY=Enforce``,
  a fresh ``edgent-ros keystore`` (sros2's default governance: discovery, liveliness, RTPS
  messages and data encrypted with AES-GCM, access control on every topic), each role in its
  enclave.

Paired and repeated: every repetition runs the three from fresh processes on one testbed, with
the same rates, sizes and message count, in an order shuffled per repetition (seeded). Each
message is sent once the uplink queue is empty; transfer time = arrival (edge) minus the header
stamp (robot), same clock; wire bytes = the tbf's sent bytes between publish and drained queue
(data, headers, security submessages, heartbeats, acks). ``ready_s`` is the time from starting
both roles to the publisher matching the subscriber (with security: authentication handshake).

Run as root from the repository root, in the ROS environment::

    source scripts/env.sh && nice -n 5 python bench/security_overhead.py

Writes ``bench/results/security_overhead.{csv,json,png}`` (the defaults are BENCHMARKS 21's run:
11 minutes); ``--report`` prints its table from the JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from pathlib import Path
import random
import statistics
import sys
import tempfile
import time
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / 'bench'))

import transfer_bench  # noqa: E402

from edgent_ros.core import security  # noqa: E402

RESULTS = ROOT / 'bench' / 'results'
CONFIGS = ('plain', 'plain-securebuild', 'secure')
ENCLAVE = '/edgent/bench/transfer'
COLUMNS = ('config', 'repetition', 'order', 'rate_mbps', 'size_bytes', 'rep', 'ready_s',
           'ideal_ms', 'measured_ms', 'ratio', 'wire_bytes', 'wire_ratio', 'dropped', 'arrived')


def config_env(config: str, keystore: Path) -> Dict[str, str]:
    """Return the environment changes of one configuration."""
    if config == 'plain':
        return {}
    env = security.node_env(str(keystore), ENCLAVE)
    if config == 'plain-securebuild':
        return {k: v for k, v in env.items() if not k.startswith('ROS_SECURITY')}
    return env


def ci95(values: List[float]) -> List[float]:
    """Return the mean's 95 % interval (t, n-1) of ``values``; the value twice when n < 2."""
    n = len(values)
    m = statistics.fmean(values)
    if n < 2:
        return [round(m, 3), round(m, 3)]
    t = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776, 6: 2.571}.get(n, 2.447)
    h = t * statistics.stdev(values) / n ** 0.5
    return [round(m - h, 3), round(m + h, 3)]


def summarize(rows: List[dict]) -> dict:
    """Per (rate, size): each configuration's per-repetition medians, their mean and interval."""
    out: Dict[str, dict] = {'cells': [], 'ready_s': {}}
    reps = sorted({r['repetition'] for r in rows})
    for c in CONFIGS:
        ready = [next(r['ready_s'] for r in rows if r['config'] == c and r['repetition'] == k)
                 for k in reps if any(r['config'] == c and r['repetition'] == k for r in rows)]
        if ready:
            out['ready_s'][c] = {'per_repetition': ready,
                                 'mean': round(statistics.fmean(ready), 3), 'ci95': ci95(ready)}
    for rate, size in sorted({(r['rate_mbps'], r['size_bytes']) for r in rows}):
        cell: dict = {'rate_mbps': rate, 'size_bytes': size}
        for c in CONFIGS:
            ms, wire, lost = [], [], 0
            for k in reps:
                rs = [r for r in rows if (r['config'], r['repetition'], r['rate_mbps'],
                                          r['size_bytes']) == (c, k, rate, size)]
                ok = [r['measured_ms'] for r in rs if r.get('measured_ms') is not None]
                lost += sum(not r['arrived'] for r in rs)
                if ok:
                    ms.append(statistics.median(ok))
                    wire.append(statistics.median(r['wire_bytes'] for r in rs))
            if ms:
                cell[c] = {'median_ms': [round(x, 3) for x in ms],
                           'mean_ms': round(statistics.fmean(ms), 3), 'ci95_ms': ci95(ms),
                           'wire_bytes': [round(x) for x in wire],
                           'mean_wire_bytes': round(statistics.fmean(wire), 1), 'lost': lost}
        if 'plain' in cell and 'secure' in cell:
            # paired per repetition: secure / plain of the same repetition
            ratio = [s / p for s, p in zip(cell['secure']['median_ms'],
                                           cell['plain']['median_ms'])]
            extra = [s - p for s, p in zip(cell['secure']['wire_bytes'],
                                           cell['plain']['wire_bytes'])]
            cell['secure_vs_plain'] = {
                'time_ratio': round(statistics.fmean(ratio), 3), 'time_ratio_ci95': ci95(ratio),
                'extra_wire_bytes': round(statistics.fmean(extra), 1),
                'extra_wire_bytes_ci95': ci95(extra)}
        out['cells'].append(cell)
    return out


def markdown(summary: dict) -> str:
    """Return the BENCHMARKS table of a summary (means over repetitions, 95 % intervals)."""
    def iv(lo_hi, f='{:.2f}'):
        return f'[{f.format(lo_hi[0])}, {f.format(lo_hi[1])}]'
    lines = ['| Mbit/s | payload B | plain ms | same build, security off ms | secure ms | '
             'secure / plain | extra wire bytes / message |',
             '|---|---|---|---|---|---|---|']
    for c in summary['cells']:
        sv = c.get('secure_vs_plain')
        if not sv:
            continue
        off = c.get('plain-securebuild', {}).get('mean_ms', float('nan'))
        lines.append(
            f"| {c['rate_mbps']:g} | {c['size_bytes']:,} | {c['plain']['mean_ms']:.1f} | "
            f"{off:.1f} | {c['secure']['mean_ms']:.1f} | {sv['time_ratio']:.2f} "
            f"{iv(sv['time_ratio_ci95'])} | {sv['extra_wire_bytes']:.0f} "
            f"{iv(sv['extra_wire_bytes_ci95'], '{:.0f}')} |")
    ready = summary['ready_s']
    lines.append('')
    lines.append('Start to first match (s, mean [95 % CI]): ' + '; '.join(
        f"{c} {ready[c]['mean']:.2f} {iv(ready[c]['ci95'])}" for c in CONFIGS if c in ready)
        + '.')
    return '\n'.join(lines)


def plot(summary: dict, path: Path) -> None:
    """Draw transfer time ratio and extra wire bytes of secure vs plain, per size and rate."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    rates = sorted({c['rate_mbps'] for c in summary['cells']})
    for rate in rates:
        cells = [c for c in summary['cells'] if c['rate_mbps'] == rate and 'secure_vs_plain' in c]
        x = [c['size_bytes'] for c in cells]
        sv = [c['secure_vs_plain'] for c in cells]
        lo = [s['time_ratio'] - s['time_ratio_ci95'][0] for s in sv]
        hi = [s['time_ratio_ci95'][1] - s['time_ratio'] for s in sv]
        axes[0].errorbar(x, [s['time_ratio'] for s in sv], yerr=[lo, hi], marker='o',
                         capsize=3, label=f'{rate:g} Mbit/s')
        axes[1].plot(x, [s['extra_wire_bytes'] for s in sv], marker='o', label=f'{rate:g} Mbit/s')
    axes[0].axhline(1.0, color='grey', lw=0.8)
    axes[0].set_ylabel('transfer time, secure / plain (mean, 95 % CI)')
    axes[1].set_ylabel('extra bytes on the wire per message')
    for ax in axes:
        ax.set_xscale('log')
        ax.set_xlabel('Tensor payload (bytes)')
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle('DDS Security (SROS2 Enforce, AES-GCM) on the testbed uplink')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Optional[List[str]] = None) -> int:
    """Parse arguments, run the paired repetitions, write CSV, JSON and PNG."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ['_pub']:
        return transfer_bench.role_pub()
    if argv[:1] == ['_sub']:
        return transfer_bench.role_sub()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    p.add_argument('--rates', default='0.1,0.5,2,10', help='Mbit/s, comma list')
    p.add_argument('--sizes', default='256,1050,3072,12288,49152', help='bytes, comma list')
    p.add_argument('--reps', type=int, default=6, help='messages per (rate, size) and run')
    p.add_argument('--repetitions', type=int, default=5)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out', type=Path, default=RESULTS / 'security_overhead.csv')
    p.add_argument('--report', action='store_true',
                   help='print the BENCHMARKS table of the JSON beside --out (no run)')
    args = p.parse_args(argv)
    if args.report:
        print(markdown(json.loads(args.out.with_suffix('.json').read_text())))
        return 0
    from edgent_ros.evaluation.testbed import Testbed, unavailable_reason
    from edgent_ros.nodes.keystore import create_fleet_keystore
    reason = unavailable_reason() or security.secure_build_missing(security.secure_lib_dir())
    if reason:
        print(f'security_overhead: {reason}', file=sys.stderr)
        return 1
    os.environ.setdefault('ROS_DOMAIN_ID', str(random.Random(args.seed).randint(200, 232)))
    rates = [float(x) for x in args.rates.split(',')]
    sizes = [int(x) for x in args.sizes.split(',')]
    rng = random.Random(args.seed)
    rows: List[dict] = []
    t0 = time.monotonic()

    def log(s: str) -> None:
        print(f'[{time.monotonic() - t0:6.0f} s] {s}', flush=True)
    with tempfile.TemporaryDirectory(prefix='edgent_ks_') as tmp:
        keystore = Path(tmp) / 'keystore'
        create_fleet_keystore(keystore, [ENCLAVE], int(os.environ['ROS_DOMAIN_ID']))
        tb = Testbed(name='edgsec', rate_mbps=max(rates), robot_quota=None)
        try:
            tb.setup()
            for k in range(args.repetitions):
                order = list(CONFIGS)
                rng.shuffle(order)
                log(f'repetition {k + 1}/{args.repetitions}: {", ".join(order)}')
                for i, c in enumerate(order):
                    got = transfer_bench.run_config(
                        tb, 'testbed', rates, sizes, args.reps, 30.0,
                        lambda s: None, ('isolated',), extra_env=config_env(c, keystore),
                        label=c)
                    for r in got:
                        r.update(repetition=k, order=i)
                    rows += got
                    ok = [r['measured_ms'] for r in got if r.get('measured_ms') is not None]
                    log(f'  {c}: {len(ok)}/{len(got)} arrived, ready after '
                        f'{got[0]["ready_s"] if got else float("nan"):.2f} s')
        finally:
            tb.teardown()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, 'w', newline='') as f:
        w = csv.DictWriter(f, COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, '') for k in COLUMNS})
    summary = summarize(rows)
    summary.update(command='python bench/security_overhead.py ' + ' '.join(argv),
                   rates_mbps=rates, sizes_bytes=sizes, messages_per_cell=args.reps,
                   repetitions=args.repetitions, seed=args.seed)
    args.out.with_suffix('.json').write_text(json.dumps(summary, indent=1) + '\n')
    plot(summary, args.out.with_suffix('.png'))
    for c in summary['cells']:
        sv = c.get('secure_vs_plain')
        if sv:
            log(f'{c["rate_mbps"]:5g} Mbit/s {c["size_bytes"]:6d} B: time x{sv["time_ratio"]:.3f} '
                f'{sv["time_ratio_ci95"]}, +{sv["extra_wire_bytes"]:.0f} B on the wire')
    log(f'ready_s: {summary["ready_s"]}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
