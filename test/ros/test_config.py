"""config/<node>.yaml lists every parameter each node declares, with its default."""

from pathlib import Path

import pytest
import rclpy
from rclpy.context import Context
import yaml

from edgent_ros.camera_node import CameraNode
from edgent_ros.edge_node import EdgeNode
from edgent_ros.planner_node import PlannerNode

CONFIG = Path(__file__).resolve().parents[2] / 'config'
BUILTIN = {'use_sim_time', 'start_type_description_service'}


@pytest.mark.parametrize('cls,name', [(CameraNode, 'camera_node'), (EdgeNode, 'edge_node'),
                                      (PlannerNode, 'planner_node')])
def test_config_file_matches_declared_parameters(domain_id, cls, name):
    params = yaml.safe_load((CONFIG / f'{name}.yaml').read_text())[f'/**/{name}'][
        'ros__parameters']
    ctx = Context()
    rclpy.init(context=ctx)
    try:
        node = cls(context=ctx)
        declared = {n: node.get_parameter(n).value for n in node._parameters}
        declared = {k: v for k, v in declared.items() if k not in BUILTIN | {'model_id'}}
        assert set(params) == set(declared)
        for k, v in declared.items():
            want = list(v) if isinstance(v, (list, tuple)) else v
            assert params[k] == want, k
        node.destroy_node()
    finally:
        ctx.try_shutdown()
