"""
edgent_ros.nodes.launch_args without processes: parameter layers, typed arguments, launch files.

The order a node's parameters come in (later wins): config/<node>.yaml, the launch file's own
choices, the user's ``params_file``, then only the launch arguments set on the command line.
test_launch_precedence.py checks the same on running nodes.
"""

import os
from pathlib import Path

from launch.actions import DeclareLaunchArgument, ExecuteProcess, LogInfo, OpaqueFunction
from launch.launch_context import LaunchContext
from launch.launch_description_sources import get_launch_description_from_python_launch_file
import pytest

from edgent_ros.nodes import launch_args as la

ROOT = Path(__file__).resolve().parents[2]
LAUNCH_FILES = sorted((ROOT / 'launch').glob('*.launch.py'))


def _context(**args):
    ctx = LaunchContext()
    ctx.launch_configurations.update(args)
    return ctx


def test_nothing_set_gives_only_the_package_yaml():
    ctx = _context()
    for name in ('camera_node', 'planner_node', 'edge_node'):
        assert la.parameter_layers(ctx, name) == [la.config(name)]
        assert os.path.isfile(la.config(name))
    assert la.parameter_layers(ctx, 'viz_node') == []          # no config/viz_node.yaml
    assert la.ros_arguments(ctx) == []
    assert la.respawn(ctx) == {'respawn': False, 'respawn_delay': 2.0}
    # declared defaults are "not set" too (what ros2 launch puts in the context)
    declared = {a.name: a.default_value[0].text if a.default_value else ''
                for a in la.declare(list(la.ARGUMENTS))}
    for name in la.OVERRIDES:
        assert declared[name] == la.NOT_SET, name
    assert la.overrides(_context(**declared), 'camera_node') == {}


def test_params_file_then_command_line(tmp_path):
    user = tmp_path / 'user.yaml'
    user.write_text('/**/camera_node:\n  ros__parameters:\n    deadline_ms: 50.0\n')
    ctx = _context(params_file=str(user), deadline_ms='80', policy='edge-only',
                   source='topic', frame_id='cam_optical', edge_node='edge2',
                   robot_namespaces='robot1, /robot2', use_sim_time='True')
    assert la.parameter_layers(ctx, 'camera_node') == [
        la.config('camera_node'), str(user),
        {'deadline_ms': 80.0, 'source': 'topic', 'frame_id': 'cam_optical',
         'use_sim_time': True}]
    assert la.parameter_layers(ctx, 'planner_node')[-1] == {
        'deadline_ms': 80.0, 'policy': 'edge-only', 'edge_node': 'edge2', 'use_sim_time': True}
    assert la.parameter_layers(ctx, 'edge_node')[-1] == {
        'robot_namespaces': ['robot1', 'robot2'], 'use_sim_time': True}
    assert la.parameter_layers(ctx, 'viz_node') == [str(user), {'use_sim_time': True}]


def test_launch_defaults_sit_below_the_params_file(tmp_path):
    user = tmp_path / 'user.yaml'
    user.write_text('{}\n')
    ctx = _context(params_file=str(user), policy='exit-only')
    assert la.parameter_layers(ctx, 'planner_node', {'edge_node': ''}) == [
        la.config('planner_node'), {'edge_node': ''}, str(user), {'policy': 'exit-only'}]


@pytest.mark.parametrize('args,message', [
    ({'deadline_ms': 'fast'}, 'deadline_ms'),
    ({'use_sim_time': 'maybe'}, 'use_sim_time'),
    ({'params_file': '/nonexistent/user.yaml'}, 'params_file'),
])
def test_bad_arguments_are_refused_by_name(args, message):
    with pytest.raises(ValueError, match=message):
        la.parameter_layers(_context(**args), 'camera_node')


def test_log_level_and_respawn():
    assert la.ros_arguments(_context(log_level='DEBUG')) == ['--log-level', 'debug']
    with pytest.raises(ValueError, match='log_level'):
        la.ros_arguments(_context(log_level='loud'))
    assert la.respawn(_context(respawn='true', respawn_delay='0.5')) == {
        'respawn': True, 'respawn_delay': 0.5}
    for bad in ('-1', 'soon'):
        with pytest.raises(ValueError, match='respawn_delay'):
            la.respawn(_context(respawn_delay=bad))


def test_rviz(monkeypatch):
    assert la.rviz(_context(), 'robot1') == []
    monkeypatch.setattr(la, 'rviz_executable', lambda: None)
    [msg] = la.rviz(_context(rviz='true'), 'robot1')
    assert isinstance(msg, LogInfo)
    text = ''.join(s.text for s in msg.msg)
    assert 'rviz2 is not installed' in text and 'edgent.rviz' in text and '/robot1' in text
    monkeypatch.setattr(la, 'rviz_executable', lambda: '/opt/ros/x/lib/rviz2/rviz2')
    [proc] = la.rviz(_context(rviz='true', use_sim_time='true', log_level='warn'), 'robot1')
    assert isinstance(proc, ExecuteProcess)
    cmd = [''.join(s.text for s in part) for part in proc.cmd]
    assert cmd == ['/opt/ros/x/lib/rviz2/rviz2', '-d', la.share('config', 'edgent.rviz'),
                   '--ros-args', '-r', '__ns:=/robot1', '-p', 'use_sim_time:=true',
                   '--log-level', 'warn']


@pytest.mark.parametrize('path', LAUNCH_FILES, ids=[p.name for p in LAUNCH_FILES])
def test_launch_files_declare_described_arguments(path):
    assert 'sys.path' not in path.read_text()
    ld = get_launch_description_from_python_launch_file(str(path))
    args = [e for e in ld.entities if isinstance(e, DeclareLaunchArgument)]
    assert {'params_file', 'use_sim_time', 'log_level', 'respawn', 'respawn_delay'} <= {
        a.name for a in args}
    for a in args:
        assert a.description and a.description != 'no description given', a.name
    assert any(isinstance(e, OpaqueFunction) for e in ld.entities)


def test_launch_files_start_the_nodes_with_nothing_set():
    """Each launch file's function, run with the declared defaults, starts its nodes."""
    want = {'robot.launch.py': {'camera_node', 'planner_node', 'viz_node'},
            'edge.launch.py': {'edge_node'},
            'demo.launch.py': {'edge_node', 'camera_node', 'planner_node', 'viz_node'}}
    for path in LAUNCH_FILES:
        ld = get_launch_description_from_python_launch_file(str(path))
        ctx = _context(**{a.name: ''.join(s.text for s in a.default_value)
                          for a in ld.entities if isinstance(a, DeclareLaunchArgument)})
        fn = next(e for e in ld.entities if isinstance(e, OpaqueFunction))
        started = fn.execute(ctx)
        assert {n.node_executable for n in started} == want[path.name], path.name


def test_keystore_secures_every_node_in_its_own_enclave(tmp_path, monkeypatch):
    from edgent_ros.core import security
    assert la.security_env(_context(), 'robot1', 'camera_node') == {}   # not set: no security
    store = tmp_path / 'ks'
    lib = tmp_path / 'secure_lib'
    lib.mkdir()
    for name in security.SECURE_LIBS:
        (lib / name).write_text('x')
    monkeypatch.setenv(security.SECURE_DIR_ENV, str(lib))
    ctx = _context(keystore=str(store))
    with pytest.raises(security.SecurityError, match='not an SROS2 keystore'):
        la.security_env(ctx, 'robot1', 'camera_node')
    for enclave in ('/edgent/robot1/camera_node', '/edgent/edge_a/edge_node'):
        where = security.enclave_dir(store, enclave)
        where.mkdir(parents=True)
        for f in security.ENCLAVE_FILES:
            (where / f).write_text('x')
    env = la.security_env(ctx, 'robot1', 'camera_node')['additional_env']
    assert env['ROS_SECURITY_ENCLAVE_OVERRIDE'] == '/edgent/robot1/camera_node'
    assert env['ROS_SECURITY_STRATEGY'] == 'Enforce'
    assert env['LD_LIBRARY_PATH'].split(os.pathsep)[0] == str(lib)
    node = la.edge(_context(keystore=str(store)), edge_name='edge_a')
    added = {''.join(s.perform(ctx) for s in k): ''.join(s.perform(ctx) for s in v)
             for k, v in node.additional_env}
    assert added['ROS_SECURITY_ENCLAVE_OVERRIDE'] == '/edgent/edge_a/edge_node'
    with pytest.raises(security.SecurityError, match='/edgent/robot2/camera_node'):
        la.camera(_context(keystore=str(store)), 'robot2')
