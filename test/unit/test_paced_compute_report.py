"""BENCHMARKS §16 quotes bench/results/paced_compute.json as the bench wrote it."""

import json
from pathlib import Path
import re

ROOT = Path(__file__).resolve().parents[2]


def paced_text(rows) -> str:
    """Return the sentence BENCHMARKS quotes for ``paced_compute.json``'s rows."""
    r = {(x['config'], bool(x['gap_ms'])): x for x in rows}

    def ms(c, paced):
        x = r[(c, paced)]
        return f'{x["median_ms"]:.2f} ms', f'{100 * x["mape_of_median"]:.1f} %'
    a, b, c, d = ms('1/10', False), ms('1/10', True), ms('5/20', False), ms('5/20', True)
    gap = next(x['gap_ms'] for x in rows if x['gap_ms'])
    return (f"device-only exit 1's layers take {a[0]} of CPU back to back ({a[1]}) but {b[0]} "
            f"when frames come {gap:g} ms apart as a camera's do ({b[1]}); exit 5's {c[0]} "
            f"({c[1]}) against {d[0]} ({d[1]}).")


def test_benchmarks_quote_the_paced_compute_results():
    rows = json.loads((ROOT / 'bench' / 'results' / 'paced_compute.json').read_text())['rows']
    text = (ROOT / 'BENCHMARKS.md').read_text()
    m = re.search(r'<!-- paced-compute -->\n(.*?)\n\s*<!-- paced-compute: end -->', text, re.S)
    assert m, 'BENCHMARKS.md has no paced-compute block'
    assert m.group(1).strip() == paced_text(rows)
    assert (ROOT / 'bench' / 'results' / 'paced_compute.png').stat().st_size > 5_000
