"""BENCHMARKS §7's tables are what ``bench/results/sweep.csv`` gives (``benchmarks_block``)."""

import json
from pathlib import Path
import re

import pytest

from edgent_ros.core.paths import DataNotFoundError, find_data
from edgent_ros.evaluation.heldout_session import plan_heldout
from edgent_ros.evaluation.sweep import benchmarks_block, read_rows, trace_markdown
from edgent_ros.evaluation.sweep_session import map_traces, TRACES_PLAN_FILE

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r'<!-- sweep-tables: (\S+) -->\n(.*?)\n<!-- sweep-tables: end -->', re.S)


def test_benchmarks_section_7_tables_are_the_committed_sweep():
    blocks = BLOCK.findall((ROOT / 'BENCHMARKS.md').read_text())
    assert blocks, 'BENCHMARKS.md has no sweep-tables block'
    for folder, quoted in blocks:
        assert quoted.strip() == benchmarks_block(read_rows(ROOT / folder / 'sweep.csv'))


def test_block_has_a_table_per_deadline_and_the_summary():
    rows = [dict(policy=p, bandwidth_mbps=bw, deadline_ms=dl, on_time_accuracy=0.5,
                 deadline_met=1.0, expected_top1=0.8, useful=0.5, exit=1.0, split=10.0,
                 encoding='raw')
            for p in ('edgent', 'oracle') for bw in (1.0, 2.0) for dl in (100.0, 200.0)]
    blk = benchmarks_block(rows, deadlines=(100.0, 200.0), policies=('edgent', 'oracle'))
    assert blk.count('**Deadline') == 2 and 'Over all 4 (bandwidth, deadline) cells' in blk
    assert '| 1 | 50 (1/10) | 50 (1/10) |' in blk
    assert '| edgent | 4 / 4 | 100.0 % | 80.0 % | 50.0 % | 50.0 % |' in blk


TRACE = re.compile(r'<!-- trace-table: (\S+) -->\n(.*?)\n<!-- trace-table: end -->', re.S)


def test_benchmarks_section_8_table_is_the_committed_traces():
    blocks = TRACE.findall((ROOT / 'BENCHMARKS.md').read_text())
    assert blocks, 'BENCHMARKS.md has no trace-table block'
    for folder, quoted in blocks:
        assert quoted.strip() == trace_markdown(read_rows(ROOT / folder / 'traces.csv')).strip()


def test_section_8_replays_the_windows_its_rule_chose():
    """Issue 18 item 7: the trace replay's windows come from the held-out rule, not by hand."""
    for folder, _ in TRACE.findall((ROOT / 'BENCHMARKS.md').read_text()):
        plan = json.loads((ROOT / folder / TRACES_PLAN_FILE).read_text())
        windows = {(w['trace'], float(w['start_s'])) for w in plan['live']}
        ran = {(r['trace'], float(r['start_s'])) for r in read_rows(ROOT / folder / 'traces.csv')}
        assert ran == windows and len(windows) == 3
        replayed = {t for t, _ in windows}
        assert not replayed & set(map_traces(ROOT / folder / 'config_map.json'))
        try:
            traces = find_data('traces')
        except DataNotFoundError:
            continue                       # no data set here: the files above still agree
        assert plan_heldout(traces, plan['robot_scale'], plan['deadline_ms'])['live'] == \
            plan['live']


def test_map_traces_reads_what_a_map_was_built_from(tmp_path):
    f = tmp_path / 'map.json'
    f.write_text('{"traces": ["a.csv", "b.csv"], "states": []}')
    assert map_traces(f) == ['a.csv', 'b.csv']
    f.write_text('[]')
    with pytest.raises(ValueError, match='not a configuration map'):
        map_traces(f)
    with pytest.raises(ValueError, match='not a configuration map'):
        map_traces(tmp_path / 'missing.json')
