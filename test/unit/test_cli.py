"""
The edgent-ros CLI without ROS: layers, plan, info; help, version, output and data paths.

Outputs default to ``$EDGENT_ROS_HOME`` (set to a temporary folder for every unit test by
``conftest.py``); data sets are looked for through ``core.paths``.
"""

import argparse
import json
from pathlib import Path
import re
import xml.etree.ElementTree as ET

import pytest

import edgent_ros
from edgent_ros.cli.main import build_parser, main
from edgent_ros.core.arch import NUM_EXITS
from edgent_ros.core.config_map import ConfigMap

ROOT = Path(__file__).resolve().parents[2]


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


def _walk(parser, path=('edgent-ros',)):
    """Yield ``(command path, parser)`` for the parser and every subparser below it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, path + (name,))


def test_every_option_of_every_subcommand_has_help():
    missing, seen = [], 0
    for path, parser in _walk(build_parser()):
        for action in parser._actions:
            seen += 1
            if isinstance(action, argparse._HelpAction):
                continue
            if not action.help:
                name = '/'.join(action.option_strings) or action.dest
                missing.append(f'{" ".join(path)} {name}')
            if isinstance(action, argparse._SubParsersAction):
                listed = {a.dest for a in action._choices_actions if a.help}
                missing += [f'{" ".join(path)} {c} (subcommand)'
                            for c in action.choices if c not in listed]
        parser.format_help()   # every help string formats (no stray %)
    assert seen > 100
    assert not missing, 'no help text: ' + ', '.join(missing)


def test_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(['--version'])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f'edgent-ros {edgent_ros.__version__}'
    xml_version = ET.parse(ROOT / 'package.xml').getroot().findtext('version')
    setup_version = re.search(r"version='([^']+)'", (ROOT / 'setup.py').read_text()).group(1)
    assert edgent_ros.__version__ == xml_version == setup_version


def _trace(tmp_path):
    trace = tmp_path / 'a.csv'
    trace.write_text('t_s,mbps\n' + ''.join(f'{t},{5.0 if t < 30 else 0.05}\n'
                                            for t in range(60)))
    return trace


def test_outputs_default_to_the_user_dir(edgent_home, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)   # nothing may land in the working directory either
    assert main(['build-map', '--traces', str(_trace(tmp_path)), '--deadlines', '300']) == 0
    out = edgent_home / 'artifacts' / 'config_map.json'
    assert str(out) in capsys.readouterr().out
    assert ConfigMap.load(out).deadlines == [300.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ['a.csv']


def test_user_dir_falls_back_to_xdg_data_home(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv('EDGENT_ROS_HOME')
    monkeypatch.setenv('XDG_DATA_HOME', str(tmp_path / 'xdg'))
    assert main(['build-map', '--traces', str(_trace(tmp_path)), '--deadlines', '300']) == 0
    assert (tmp_path / 'xdg' / 'edgent_ros' / 'artifacts' / 'config_map.json').is_file()


def test_profile_writes_under_the_user_dir(edgent_home, capsys):
    assert main(['profile', '--host', 'edge', '--quick', '--no-branches', '--repeats', '1',
                 '--warmup', '0', '--threads', '1', '--no-progress']) == 0
    out = edgent_home / 'results' / 'profile_edge.csv'
    assert json.loads(capsys.readouterr().out)['profile_csv'] == str(out) and out.is_file()


def test_fit_reads_and_writes_under_the_user_dir(edgent_home, capsys):
    # inputs default to where `profile` writes (<user dir>/results), so the error names them
    assert main(['fit']) == 2
    err = capsys.readouterr().err
    assert str(edgent_home / 'results' / 'profile_robot.csv') in err
    assert 'edgent-ros profile --host robot' in err


def test_missing_data_set_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv('EDGENT_ROS_DATA', str(tmp_path))   # holds no cifar10/
    assert main(['train', '--epochs', '1']) == 2
    err = capsys.readouterr().err
    assert 'cifar10 data not found' in err and str(tmp_path / 'cifar10') in err
    assert '--data-dir' in err and 'EDGENT_ROS_DATA' in err
    assert main(['accuracy', '--data-dir', str(tmp_path / 'nowhere')]) == 2
    err = capsys.readouterr().err
    assert 'nowhere' in err and '--data-dir' in err
