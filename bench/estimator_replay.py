"""
Replay the recorded loopback transfer logs through the old and the new bandwidth estimator.

The logs (``edgent_ros/artifacts/transfer_logs``, from ``bench/record_transfer_logs.py``) hold
every transfer sample the camera saw on the one-host loopback link: quiet, with a busy loop on
the edge's core, with one busy loop per core. Both estimators get the same samples (a paired
comparison): the byte-weighted mean of before issue 17 (``BandwidthEstimator``, as the camera
configured it) and the tuned ``RobustBandwidthEstimator`` (``ESTIMATOR_SETTINGS``). Reported per
log: the share of estimates (after the 5th) within 2x of the quiet path's median sample rate,
the lowest estimate, and the median. Writes ``bench/results/estimator_replay.json`` and
``estimator_replay.png``::

    python bench/estimator_replay.py
"""

from __future__ import annotations

import json
from pathlib import Path

from edgent_ros.core.link import replay_transfers
from edgent_ros.evaluation.trace_sim import (comparison_markdown, compared_estimators,
                                             estimator_comparison, load_logs)

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / 'bench' / 'results'


def main() -> int:
    """Replay, write the JSON and the PNG."""
    logs = load_logs()
    body = estimator_comparison(logs, compared_estimators())
    (OUT / 'estimator_replay.json').write_text(json.dumps(body, indent=1) + '\n')
    ref = body['reference_mbps']
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(logs), figsize=(13, 3.6), sharey=True)
    for ax, name in zip(axes, logs):
        for est_name, make in compared_estimators().items():
            ups = replay_transfers(make(), logs[name])[5:]
            t0 = logs[name][0][0]
            ax.plot([t - t0 for t, _ in ups], [e.bps / 1e6 for _, e in ups], lw=1,
                    label=est_name)
        ax.axhspan(ref / 2, 2 * ref, color='0.9', zorder=0)
        ax.set_yscale('log')
        ax.set_title(name.replace('loopback_', 'loopback, hog: '), fontsize=9)
        ax.set_xlabel('s')
    axes[0].set_ylabel('estimate (Mbit/s); grey: 2x band')
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(OUT / 'estimator_replay.png', dpi=110)
    print(comparison_markdown(body))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
