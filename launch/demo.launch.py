"""Everything on one host: one edge_node shared by the robots in ``robots`` (default two)."""

import os
import sys

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
import _common  # noqa: E402


def _nodes(context):
    robots = [r.strip().strip('/') for r in
              LaunchConfiguration('robots').perform(context).split(',')]
    nodes = [_common.edge(context, robots)]
    for ns in robots:
        # the edge is shared: its exit/split are advisory, so the planners leave it alone
        nodes += [_common.camera(context, ns), _common.planner(context, ns, edge_node='')]
        if LaunchConfiguration('viz').perform(context).lower() in ('true', '1'):
            nodes.append(_common.viz(ns))
    return nodes


def generate_launch_description():
    """Declare the arguments and start edge, cameras and planners."""
    return LaunchDescription([
        DeclareLaunchArgument('robots', default_value='robot1,robot2',
                              description='comma-separated robot namespaces ("" = one robot '
                                          'in the root namespace)'),
        DeclareLaunchArgument('deadline_ms', default_value='100.0'),
        DeclareLaunchArgument('policy', default_value='edgent'),
        DeclareLaunchArgument('source', default_value='sample'),
        DeclareLaunchArgument('image_topic', default_value='image_raw'),
        DeclareLaunchArgument('params_file', default_value=''),
        DeclareLaunchArgument('viz', default_value='true', description='start viz_node(s)'),
        OpaqueFunction(function=_nodes),
    ])
