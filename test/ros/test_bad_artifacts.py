"""Nodes refuse to start on missing or garbled artifacts, naming the file and the problem."""

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
