"""Edge PC: edge_node serving one or more robots, e.g. ``robot_namespaces:=robot1,robot2``."""

import os
import sys

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
import _common  # noqa: E402


def _nodes(context):
    robots = [r.strip().strip('/') for r in
              LaunchConfiguration('robot_namespaces').perform(context).split(',')]
    return [_common.edge(context, robots or [''])]


def generate_launch_description():
    """Declare the arguments and start the edge node."""
    return LaunchDescription([
        DeclareLaunchArgument('robot_namespaces', default_value='',
                              description='comma-separated robot namespaces ("" = root)'),
        DeclareLaunchArgument('params_file', default_value='',
                              description='YAML overriding config/edge_node.yaml'),
        OpaqueFunction(function=_nodes),
    ])
