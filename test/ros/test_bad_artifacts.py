"""Nodes refuse to start on missing or garbled artifacts, naming the file and the problem."""

import subprocess

import pytest


@pytest.mark.parametrize('executable,param,content,problem', [
    ('edge_node', 'weights_path', None, 'not found'),
    ('edge_node', 'weights_path', b'\x00garbage' * 10, 'safetensors'),
    ('camera_node', 'accuracy_path', b'{"format": "edgent_ros/accuracy/1"', 'JSON'),
    ('camera_node', 'latency_models_path', None, 'not found'),
    ('planner_node', 'latency_models_path', b'[1, 2, 3]', 'format'),
    ('planner_node', 'accuracy_path', b'{"format": "edgent_ros/accuracy/1", "sha256": "x"}',
     'checksum'),
])
def test_node_fails_at_start_naming_the_file(procs, tmp_path, executable, param, content,
                                             problem):
    path = tmp_path / f'bad_{param}.dat'
    if content is not None:
        path.write_bytes(content)
    p = procs.start(executable, **{param: str(path)})
    assert p.wait(60) == 2
    log = procs.log(executable)
    assert str(path) in log and problem in log, log


def test_planner_refuses_a_bad_robot_spread_and_takes_a_good_one(procs):
    bad = procs.start('planner_node', name='bad', robot_time_spread=[1.0, -0.5])
    assert bad.wait(60) == 2
    assert 'robot spread ratios must be finite and > 0' in procs.log('bad'), procs.log('bad')
    good = procs.start('planner_node', name='good', robot_time_spread=[0.8, 1.0, 1.4])
    try:
        good.wait(8)
        pytest.fail(f'planner_node stopped with a good robot spread: {procs.log("good")}')
    except subprocess.TimeoutExpired:
        pass
    assert procs.stop('good') == 0, procs.log('good')
