"""BENCHMARKS 21 (DDS Security on the link) quotes bench/results/security_overhead.json."""

import importlib.util
import json
from pathlib import Path
import re

ROOT = Path(__file__).resolve().parents[2]
RESULT = ROOT / 'bench' / 'results' / 'security_overhead.json'


def _bench():
    spec = importlib.util.spec_from_file_location(
        'security_overhead', ROOT / 'bench' / 'security_overhead.py')
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_benchmarks_quote_the_committed_run():
    body = json.loads(RESULT.read_text())
    quoted = re.search(r'<!-- security-overhead -->\n(.*?)\n<!-- security-overhead: end -->',
                       (ROOT / 'BENCHMARKS.md').read_text(), re.S).group(1)
    assert quoted == _bench().markdown(body)


def test_the_committed_run_is_paired_repeated_and_complete():
    body = json.loads(RESULT.read_text())
    assert body['repetitions'] >= 3
    for cell in body['cells']:
        for config in ('plain', 'plain-securebuild', 'secure'):
            assert len(cell[config]['median_ms']) == body['repetitions'], (cell, config)
            assert cell[config]['lost'] == 0
        # the secure messages always carry more bytes than the plain ones
        assert all(s > p for s, p in zip(cell['secure']['wire_bytes'],
                                         cell['plain']['wire_bytes']))
