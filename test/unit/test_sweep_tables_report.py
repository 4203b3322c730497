"""BENCHMARKS §7's tables are what ``bench/results/sweep.csv`` gives (``benchmarks_block``)."""

from pathlib import Path
import re

from edgent_ros.evaluation.sweep import benchmarks_block, read_rows, trace_markdown

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
