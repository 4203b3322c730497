#!/usr/bin/env python3
"""
Delay and loss on the testbed: configured vs observed (issue 20, item 2).

Brings up a testbed with the relay (``Testbed(relay=True)``, shaped at ``--rate`` Mbit/s), and
for every (one-way delay, loss, burst, jitter) of the grid sends ``--count`` numbered UDP probes
each way, robot -> edge and edge -> robot, one every ``--interval-ms``, from sockets in the two
namespaces of this one process (one clock: the one-way time is measured, not half a round trip).
Writes, per configuration and direction, the configured values, what the probes saw (loss with
its 95 % Wilson interval, mean run of consecutive losses, one-way delay p50/p99) and what the
relay counted (its drops, the hold time it gave each frame), to ``bench/results/relay_check.json``
and a plot ``relay_check.png``. A configuration is ``ok`` when the configured loss lies in the
probes' interval and the observed median one-way delay is within 1 ms + 5 % of the configured one.
Root only; ~2.5 min.

    python bench/relay_check.py
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys
import time

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgent_ros.evaluation.relay import check_markdown  # noqa: E402
from edgent_ros.evaluation.testbed import (probe_link, probe_summary, Testbed,  # noqa: E402
                                           unavailable_reason)

GRID = [  # (delay_ms, loss, burst, jitter_ms)
    (0, 0.0, 1, 0), (20, 0.0, 1, 0), (100, 0.0, 1, 0),
    (20, 0.01, 1, 0), (20, 0.05, 1, 0), (20, 0.10, 1, 0),
    (100, 0.01, 1, 0), (100, 0.05, 1, 0), (100, 0.10, 1, 0),
    (20, 0.05, 4, 0), (20, 0.0, 1, 5),
]


def check(cfg: dict, seen: dict) -> bool:
    """Return True when the probes saw what was configured (loss in the CI, delay close)."""
    lo, hi = seen['loss_ci95']
    p50 = seen['one_way_ms']['p50']
    delay_ok = p50 is not None and (cfg['jitter_ms'] > 0 or
                                    abs(p50 - cfg['delay_ms']) <= 1.0 + 0.05 * cfg['delay_ms'])
    return lo <= cfg['loss'] <= hi and delay_ok


def plot(rows: list, out_png: Path) -> None:
    """Draw configured vs observed delay and loss, both directions."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for d, m in (('up', 'o'), ('down', 's')):
        rs = [r for r in rows if r['direction'] == d and r['config']['jitter_ms'] == 0]
        a.scatter([r['config']['delay_ms'] for r in rs],
                  [r['probes']['one_way_ms']['p50'] for r in rs], marker=m, label=f'{d} p50')
        a.scatter([r['config']['delay_ms'] for r in rs],
                  [r['probes']['one_way_ms']['p99'] for r in rs], marker=m, facecolors='none',
                  edgecolors='C3', label=f'{d} p99')
        x = [r['config']['loss'] * 100 + (0.3 if d == 'down' else 0) for r in rs]
        y = [r['probes']['loss'] * 100 for r in rs]
        err = [[(r['probes']['loss'] - r['probes']['loss_ci95'][0]) * 100 for r in rs],
               [(r['probes']['loss_ci95'][1] - r['probes']['loss']) * 100 for r in rs]]
        b.errorbar(x, y, yerr=err, fmt=m, capsize=3, label=d)
    a.plot([0, 100], [0, 100], 'k:', lw=1)
    a.set(xlabel='configured one-way delay (ms)', ylabel='observed one-way delay (ms)',
          title='delay')
    a.legend(fontsize=8)
    b.plot([0, 10], [0, 10], 'k:', lw=1)
    b.set(xlabel='configured loss (%)', ylabel='observed loss (%, 95 % CI)', title='loss')
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)


def main() -> int:
    """Run the grid; write the JSON and the PNG; exit 1 if a configuration was not reproduced."""
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--rate', type=float, default=10.0, help='shaped uplink, Mbit/s')
    ap.add_argument('--count', type=int, default=2000, help='probes per direction and config')
    ap.add_argument('--interval-ms', type=float, default=2.0)
    ap.add_argument('--size', type=int, default=200, help='probe datagram bytes')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--out', type=Path, default=ROOT / 'bench/results/relay_check.json')
    ap.add_argument('--name', default='rlychk')
    args = ap.parse_args()
    why = unavailable_reason()
    if why:
        print(f'relay_check: {why}', file=sys.stderr)
        return 2
    rows = []
    t0 = time.monotonic()
    with Testbed(name=args.name, rate_mbps=args.rate, relay=True, robot_quota=None,
                 relay_seed=args.seed) as tb:
        for i, (delay, loss, burst, jitter) in enumerate(GRID):
            cfg = {'delay_ms': float(delay), 'loss': float(loss), 'burst': float(burst),
                   'jitter_ms': float(jitter)}
            for d in ('up', 'down'):
                tb.set_impairment(seed=args.seed + i, reset_stats=True, **cfg)
                sent, got, _ = probe_link(tb, d, args.count, args.interval_ms / 1e3, args.size,
                                          wait_s=0.5 + 4 * (delay + 4 * jitter) / 1e3)
                seen = probe_summary(sent, got, burst)
                relay = tb.relay_stats()[d]
                row = {'config': cfg, 'direction': d, 'probes': seen,
                       'relay': {k: relay[k] for k in ('frames_in', 'dropped_loss',
                                                       'dropped_full', 'send_errors',
                                                       'observed_loss', 'hold_ms')},
                       'ok': check(cfg, seen)}
                rows.append(row)
                print(f'[{len(rows)}/{2 * len(GRID)}] {d:4s} delay {delay:>3} ms jitter '
                      f'{jitter} loss {loss:.2f} burst {burst}: observed loss {seen["loss"]:.4f} '
                      f'{seen["loss_ci95"]}, run {seen["mean_loss_run"]}, one-way p50 '
                      f'{seen["one_way_ms"]["p50"]} p99 {seen["one_way_ms"]["p99"]} ms '
                      f'{"ok" if row["ok"] else "NOT REPRODUCED"}', file=sys.stderr, flush=True)
        socket_drops = tb.relay_stats()['socket_stats']
    out = {'rate_mbps': args.rate, 'count': args.count, 'interval_ms': args.interval_ms,
           'size': args.size, 'seed': args.seed, 'elapsed_s': round(time.monotonic() - t0, 1),
           'relay_socket_stats_last_config': socket_drops,
           'all_ok': all(r['ok'] for r in rows), 'rows': rows,
           'command': 'python bench/relay_check.py'}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + '\n')
    plot(rows, args.out.with_suffix('.png'))
    args.out.with_suffix('.md').write_text(check_markdown(rows))
    print(f'relay_check: {sum(r["ok"] for r in rows)}/{len(rows)} reproduced; {args.out}',
          file=sys.stderr)
    return 0 if out['all_ok'] else 1


if __name__ == '__main__':
    sys.exit(main())
