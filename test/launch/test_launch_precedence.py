"""
Parameter precedence on running nodes, started with ``ros2 launch`` (skipped where it is not).

Four launches run at once in one test domain: robot p1 with a ``params_file`` only, robot p2
with the same file plus command-line arguments, robot p3 with nothing set, and the edge with
the file. Parameters are read through the nodes' real parameter services:
config/<node>.yaml < params_file < command line, and unset arguments change nothing.
"""

import os
from pathlib import Path
import random
import shutil
import signal
import subprocess
import time

from ament_index_python.packages import get_package_share_directory
import pytest
from rclpy.parameter_client import AsyncParameterClient
import yaml

from edgent_ros.nodes import launch_args
from ros_helpers import get_parameters, Listener

if shutil.which('ros2') is None:
    pytest.skip('ros2 launch is not installed', allow_module_level=True)

START_TIMEOUT_S = 180.0      # seven node processes on a small, shared machine
CALL_TIMEOUT_S = 15.0

USER_YAML = {
    '/**/camera_node': {'ros__parameters': {
        'deadline_ms': 123.0, 'source': 'topic', 'frame_id': 'user_optical_frame'}},
    '/**/planner_node': {'ros__parameters': {
        'deadline_ms': 123.0, 'policy': 'device-only', 'edge_node': 'user_edge'}},
    '/**/edge_node': {'ros__parameters': {'robot_namespaces': ['p1']}},
}
CMDLINE = {'deadline_ms': '77', 'policy': 'edge-only', 'frame_id': 'cmd_optical_frame',
           'use_sim_time': 'true', 'log_level': 'debug', 'rviz': 'true'}
NODES = {'/edge_node', '/p1/camera_node', '/p1/planner_node', '/p2/camera_node',
         '/p2/planner_node', '/p3/camera_node', '/p3/planner_node'}


def _package_yaml(node):
    path = Path(get_package_share_directory('edgent_ros')) / 'config' / f'{node}.yaml'
    return yaml.safe_load(path.read_text())[f'/**/{node}']['ros__parameters']


class _Launch:
    """``ros2 launch edgent_ros <file> args...`` as a process group, its output in a file."""

    def __init__(self, path, file, **args):
        self.path = path
        self.log = open(path, 'w')
        argv = ['ros2', 'launch', 'edgent_ros', file] + [f'{k}:={v}' for k, v in args.items()]
        self.p = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                  start_new_session=True)

    def stop(self):
        """SIGINT the launch group (SIGKILL after 20 s); return the launch's exit code."""
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGINT)
            try:
                self.p.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait(5)
        if not self.log.closed:
            self.log.close()
        return self.p.returncode

    def output(self):
        """Return what the launch printed so far."""
        return self.path.read_text()


class _Running:
    """The four launches and a probe node that reads their nodes' parameters."""

    def __init__(self, tmp):
        self.user = tmp / 'user.yaml'
        self.user.write_text(yaml.safe_dump(USER_YAML))
        self.listener = Listener()
        self.clients = {}
        self.launches = {
            'edge': _Launch(tmp / 'edge.log', 'edge.launch.py', params_file=self.user),
            'p1': _Launch(tmp / 'p1.log', 'robot.launch.py', namespace='p1', viz='false',
                          params_file=self.user),
            'p2': _Launch(tmp / 'p2.log', 'robot.launch.py', namespace='p2', viz='false',
                          params_file=self.user, **CMDLINE),
            'p3': _Launch(tmp / 'p3.log', 'robot.launch.py', namespace='p3', viz='false'),
        }

    def nodes(self):
        return {(ns.rstrip('/') + '/' + n) for n, ns in
                self.listener.node.get_node_names_and_namespaces()}

    def param(self, node, name):
        """Return parameter ``name`` of ``node`` through its parameter service."""
        if node not in self.clients:
            self.clients[node] = AsyncParameterClient(self.listener.node, node)
        client = self.clients[node]
        assert self.listener.spin_until(client.services_are_ready, CALL_TIMEOUT_S), node
        v = get_parameters(self.listener, client, [name])[0]
        return {1: v.bool_value, 2: v.integer_value, 3: v.double_value, 4: v.string_value,
                9: list(v.string_array_value)}[v.type]

    def outputs(self):
        return '\n'.join(f'--- {k}\n{la.output()[-3000:]}' for k, la in self.launches.items())

    def stop(self):
        return {k: la.stop() for k, la in self.launches.items()}


@pytest.fixture(scope='module')
def running(tmp_path_factory):
    """Start the four launches in a domain of this module's own; stop them afterwards."""
    saved = {k: os.environ.get(k) for k in ('ROS_DOMAIN_ID', 'ROS_AUTOMATIC_DISCOVERY_RANGE')}
    # 200..231: apart from ros_helpers' per-test domains (100..199)
    os.environ['ROS_DOMAIN_ID'] = str(random.Random(os.getpid() ^ time.time_ns())
                                      .randrange(200, 232))
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    run = None
    try:
        run = _Running(tmp_path_factory.mktemp('precedence'))
        assert run.listener.spin_until(lambda: NODES <= run.nodes(), START_TIMEOUT_S), \
            f'missing {NODES - run.nodes()}\n{run.outputs()}'
        yield run
    finally:
        if run is not None:
            run.stop()
            run.listener.close()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_params_file_beats_package_yaml(running):
    """Every parameter launch used to force comes from the user's YAML when nothing is set."""
    for node in ('camera_node', 'planner_node'):
        for name, want in USER_YAML[f'/**/{node}']['ros__parameters'].items():
            assert running.param(f'/p1/{node}', name) == want, (node, name)
    assert running.param('/edge_node', 'robot_namespaces') == ['p1']
    assert running.param('/p1/camera_node', 'use_sim_time') is False


def test_command_line_beats_params_file(running):
    for node in ('camera_node', 'planner_node'):
        assert running.param(f'/p2/{node}', 'deadline_ms') == 77.0, node
    assert running.param('/p2/planner_node', 'policy') == 'edge-only'
    assert running.param('/p2/camera_node', 'frame_id') == 'cmd_optical_frame'
    # not set on the command line: the params_file still holds
    assert running.param('/p2/camera_node', 'source') == 'topic'
    assert running.param('/p2/planner_node', 'edge_node') == 'user_edge'


def test_nothing_set_gives_package_yaml(running):
    camera, planner = _package_yaml('camera_node'), _package_yaml('planner_node')
    for name in ('deadline_ms', 'source', 'frame_id'):
        assert running.param('/p3/camera_node', name) == camera[name], name
    for name in ('deadline_ms', 'policy', 'edge_node'):
        assert running.param('/p3/planner_node', name) == planner[name], name
    # one documented default: a robot's camera and planner agree on the deadline
    assert camera['deadline_ms'] == planner['deadline_ms']
    assert running.param('/p3/camera_node', 'frame_id') != 'p3/camera'   # launch sets none


def test_use_sim_time_and_log_level_reach_the_nodes(running):
    for node in ('camera_node', 'planner_node'):
        assert running.param(f'/p2/{node}', 'use_sim_time') is True, node
        assert running.param(f'/p3/{node}', 'use_sim_time') is False, node
    for launch in ('p2', 'p3'):
        # rcl's own debug lines and the nodes' show only where log_level:=debug was given
        debug = {line.split()[0] for line in running.launches[launch].output().splitlines()
                 if '[DEBUG]' in line and line.startswith('[')}
        want = {'[camera_node-1]', '[planner_node-2]'} if launch == 'p2' else set()
        assert want == (debug & {'[camera_node-1]', '[planner_node-2]'}), (launch, debug)


def test_rviz_without_rviz2_is_reported_and_the_launch_goes_on(running):
    if launch_args.rviz_executable() is not None:
        pytest.skip('rviz2 is installed here: it was started')
    assert 'rviz2 is not installed' in running.launches['p2'].output()
    assert {'/p2/camera_node', '/p2/planner_node'} <= running.nodes()


def test_every_launch_stops_cleanly(running):
    assert NODES <= running.nodes(), running.outputs()
    codes = running.stop()
    assert codes == {k: 0 for k in codes}, running.outputs()
