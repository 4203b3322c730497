"""config/<node>.yaml lists every parameter each node declares, with its default."""

import json
from pathlib import Path
import subprocess
import sys

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / 'config'
BUILTIN = {'use_sim_time', 'start_type_description_service'}

# Build the node in a fresh interpreter (as `ros2 run` would) and print its declared parameters:
# the test process then holds no node, worker thread or DDS participant of its own, and a node
# that hangs at start-up fails this test after the timeout instead of stalling the suite.
DECLARED = '''
import json, sys
import rclpy
from rclpy.context import Context
module, cls = sys.argv[1:3]
node_cls = getattr(__import__(f'edgent_ros.nodes.{module}', fromlist=[cls]), cls)
ctx = Context()
rclpy.init(context=ctx)
try:
    node = node_cls(context=ctx)
    print(json.dumps({n: node.get_parameter(n).value for n in node._parameters}))
    node.destroy_node()
finally:
    ctx.try_shutdown()
'''


@pytest.mark.parametrize('cls,name', [('CameraNode', 'camera_node'), ('EdgeNode', 'edge_node'),
                                      ('PlannerNode', 'planner_node')])
def test_config_file_matches_declared_parameters(domain_id, cls, name):
    params = yaml.safe_load((CONFIG / f'{name}.yaml').read_text())[f'/**/{name}'][
        'ros__parameters']
    r = subprocess.run([sys.executable, '-c', DECLARED, name, cls], capture_output=True,
                       text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    declared = json.loads(r.stdout.strip().splitlines()[-1])
    declared = {k: v for k, v in declared.items() if k not in BUILTIN | {'model_id'}}
    assert set(params) == set(declared)
    for k, v in declared.items():
        assert params[k] == v, k
