"""
BENCHMARKS sections 9-15: every marked table is what its committed results file gives.

A block ``<!-- NAME: FILE [FILE ...] -->`` ... ``<!-- NAME: end -->`` quotes the table that the
bench script which wrote FILE renders from it (``RENDER``); each test regenerates it.
"""

import csv
import importlib.util
import json
from pathlib import Path
import re

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / 'bench'


def _bench(name: str):
    """Import ``bench/<name>.py`` by its path (the bench folder is no package)."""
    spec = importlib.util.spec_from_file_location(f'bench_{name}', BENCH / f'{name}.py')
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _csv(path: Path) -> list:
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def _frames(path: Path) -> Path:
    return path.with_name(path.stem + '_frames.csv')


RENDER = {
    'confidence-table': lambda p: _bench('bench_confidence').markdown(
        json.loads(p[0].read_text())),
    'load-table': lambda p: _bench('bench_load').markdown(json.loads(p[0].read_text())),
    'startup-table': lambda p: _bench('startup').markdown(_csv(p[0])),
    'small-payload-nodes': lambda p: _bench('small_payload').nodes_markdown(_csv(p[0])),
    'small-payload-pubsub': lambda p: _bench('small_payload').pubsub_markdown(_csv(p[0])),
    'sweep-bn-table': lambda p: _bench('sweep_bn_report').cells_markdown(
        _csv(p[0]), _csv(_frames(p[0]))),
    'sweep-bn-reps': lambda p: _bench('sweep_bn_report').reps_markdown(
        [(_csv(x), _csv(_frames(x))) for x in p]),
    'bottleneck-table': lambda p: _bench('bottleneck_table').markdown(
        json.loads(p[0].read_text())),
    'transport-sizes': lambda p: _bench('transport_sizes').markdown(_csv(p[0])),
    'cut-analysis': lambda p: _bench('cut_analysis').markdown(_csv(p[0])),
    'model-sweep': lambda p: _bench('sweep_model_report').policy_markdown(
        _bench('sweep_model_report').read_reps(p), len(p),
        _bench('sweep_model_report').BRANCH_LENS),
}


def _blocks(name: str) -> list:
    """Return ``[(results files, quoted text)]`` of BENCHMARKS.md's ``name`` blocks."""
    text = (ROOT / 'BENCHMARKS.md').read_text()
    pattern = rf'<!-- {re.escape(name)}: ((?:(?!end -->)[^\n])+?) -->\n(.*?)\n<!-- {name}: end -->'
    return [([ROOT / f for f in files.split()], quoted)
            for files, quoted in re.findall(pattern, text, re.S)]


@pytest.mark.parametrize('name', sorted(RENDER))
def test_quoted_table_is_the_committed_results(name):
    blocks = _blocks(name)
    assert blocks, f'BENCHMARKS.md has no {name} block'
    for files, quoted in blocks:
        for f in files:
            assert f.is_file(), f'{name}: {f} is not committed'
        assert quoted.strip() == RENDER[name](files).strip(), name


def test_every_block_in_sections_9_to_15_is_checked():
    text = (ROOT / 'BENCHMARKS.md').read_text()
    part = text[text.index('\n## 9. '):text.index('\n## 16. ')]
    names = set(re.findall(r'<!-- ([\w-]+): (?!end -->)', part))
    assert names == set(RENDER)


def test_section_9_encoding_ratios_are_the_shipped_accuracy_table():
    # BENCHMARKS 9.1: bytes vs fp32 (min / median / max over the mid-network cuts, mean bytes)
    # and top-1 lost (max / mean) per encoding, as edgent-ros accuracy wrote them
    configs = json.loads((ROOT / 'edgent_ros' / 'artifacts' / 'accuracy.json').read_text())[
        'encodings']['configs']
    by = {}
    for r in configs:
        by.setdefault((r['exit'], r['split']), {})[r['encoding']] = r
    lines = {line.split(' |')[0]: line for line in (ROOT / 'BENCHMARKS.md').read_text().split(
        '\n') if line.startswith('| ') and '× fewer' in line}
    for label, enc in (('| fp16', 'fp16'), ('| **int8**', 'int8'), ('| int8 + zlib', 'int8-zlib'),
                       ('| zlib of fp32', 'compressed')):
        cuts = [d for (e, s), d in by.items() if s > 0 and enc in d]
        ratio = sorted(d['raw']['bytes_mean'] / d[enc]['bytes_mean'] for d in cuts)
        med = (ratio[(len(ratio) - 1) // 2] + ratio[len(ratio) // 2]) / 2
        lost = [100 * (d['raw']['top1'] - d[enc]['top1']) for d in cuts]
        line = next(v for k, v in lines.items() if k.startswith(label))
        nums = re.findall(r'[\d.]+', line.split('|')[2])
        assert [float(x) for x in nums[:3]] == pytest.approx(
            [ratio[0], med, ratio[-1]], abs=0.051 if ratio[-1] >= 10 else 0.0051), label
        lost_cell = re.findall(r'[\d.]+', line.split('|')[3])
        if lost_cell and float(lost_cell[0]) > 0:
            assert float(lost_cell[0]) == pytest.approx(max(lost), abs=0.0051), label


def test_readme_top1_per_exit_is_the_shipped_accuracy():
    readme = (ROOT / 'README.md').read_text()
    art = ROOT / 'edgent_ros' / 'artifacts'
    alex = json.loads((art / 'accuracy.json').read_text())['exits']
    row = '| top-1 | ' + ' | '.join(f'{100 * e["top1"]:.1f} %' for e in alex) + ' |'
    assert row in readme
    res = json.loads((art / 'resnet64.accuracy.json').read_text())['exits']
    line = ' / '.join(f'{100 * e["top1"]:.1f}' for e in res) + ' %'
    assert line in ' '.join(readme.split()), line
