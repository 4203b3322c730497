"""The edgent-ros CLI subcommands that need no ROS: layers, plan, info."""

import json

import pytest

from edgent_ros.cli.main import main
from edgent_ros.core.arch import NUM_EXITS


def _json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_layers_json_lists_every_branch(capsys):
    out = _json(capsys, ['layers', '--json'])
    exits = {r['exit'] for r in out['layers']}
    assert exits == set(range(1, NUM_EXITS + 1))
    row = out['layers'][0]
    assert set(row) >= {'type', 'input_shape', 'output_shape', 'output_bytes', 'flops'}


def test_plan_json_gives_a_decision_with_breakdown(capsys):
    d = _json(capsys, ['plan', '--bandwidth-mbps', '2', '--deadline-ms', '50', '--json'])
    assert 1 <= d['exit_index'] <= NUM_EXITS
    assert d['total_ms'] == pytest.approx(d['device_ms'] + d['transfer_ms'] + d['edge_ms'])
    assert d['feasible'] is True and d['total_ms'] <= 50
    assert 0 < d['accuracy'] <= 1


def test_plan_zero_bandwidth_is_device_only(capsys):
    d = _json(capsys, ['plan', '--bandwidth-mbps', '0', '--deadline-ms', '1000', '--json'])
    assert d['split_index'] == d['branch_layers'] and d['transfer_ms'] == 0


def test_plan_impossible_deadline_is_marked_infeasible(capsys):
    d = _json(capsys, ['plan', '--bandwidth-mbps', '1', '--deadline-ms', '0.01', '--json'])
    assert d['feasible'] is False and 'deadline' in d['reason']


def test_plan_text_output(capsys):
    assert main(['plan', '--bandwidth-mbps', '5', '--deadline-ms', '100']) == 0
    out = capsys.readouterr().out
    assert 'expected top-1' in out and 'predicted latency' in out


def test_info_json(capsys):
    info = _json(capsys, ['info', '--json'])
    assert [e['exit'] for e in info['exits']] == list(range(1, NUM_EXITS + 1))
    assert info['params'] > 0 and info['model_id'].startswith('alexnet5-')
    assert set(info['latency_mape']) == {'robot', 'edge'}
    assert all(0 < v < 1 for v in info['latency_mape'].values())


def test_missing_artifact_is_a_clear_error(capsys, tmp_path):
    rc = main(['plan', '--bandwidth-mbps', '1', '--deadline-ms', '10',
               '--latency-models', str(tmp_path / 'nope.json')])
    assert rc == 2
    assert 'nope.json' in capsys.readouterr().err
