"""BENCHMARKS 19 (several edges) quotes bench/results/multi_edge.json as the bench prints it."""

import importlib.util
import json
from pathlib import Path
import re

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location('multi_edge', ROOT / 'bench' / 'multi_edge.py')
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_benchmarks_quote_the_committed_multi_edge_run():
    body = json.loads((ROOT / 'bench/results/multi_edge.json').read_text())
    quoted = re.search(r'<!-- multi-edge -->\n(.*?)\n<!-- multi-edge: end -->',
                       (ROOT / 'BENCHMARKS.md').read_text(), re.S).group(1)
    assert quoted == _bench().markdown(body)


def test_the_committed_failover_runs_account_for_every_frame():
    body = json.loads((ROOT / 'bench/results/multi_edge.json').read_text())
    assert body['failover'] and body['robots'] >= 8
    for run in body['failover']:
        homes = {row['home'] for row in run['per_robot'].values()}
        assert homes == {'edge_a', 'edge_b'}, 'the robots were spread over both edges'
        for row in run['per_robot'].values():
            assert row['duplicates'] == 0 and row['missing'] == 0
            if row['home'] == 'edge_a':   # each moved to edge_b and came back
                assert 'moved_after_s' in row and 'back_after_s' in row
