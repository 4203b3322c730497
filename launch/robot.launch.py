"""Robot side: camera_node + planner_node, e.g. ``ros2 launch edgent_ros robot.launch.py namespace:=robot1``."""  # noqa: E501

import os
import sys

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
import _common  # noqa: E402


def _nodes(context):
    ns = LaunchConfiguration('namespace').perform(context).strip('/')
    nodes = [_common.camera(context, ns), _common.planner(context, ns)]
    if LaunchConfiguration('viz').perform(context).lower() in ('true', '1'):
        nodes.append(_common.viz(ns))
    return nodes


def generate_launch_description():
    """Declare the arguments and start camera and planner in the robot's namespace."""
    return LaunchDescription([
        DeclareLaunchArgument('namespace', default_value='', description='robot namespace'),
        DeclareLaunchArgument('deadline_ms', default_value='100.0',
                              description='latency deadline per frame (ms)'),
        DeclareLaunchArgument('policy', default_value='edgent',
                              description='edgent | device-only | edge-only | partition-only | '
                                          'exit-only'),
        DeclareLaunchArgument('source', default_value='sample',
                              description='image source: sample | cifar10-test | topic'),
        DeclareLaunchArgument('image_topic', default_value='image_raw',
                              description='sensor_msgs/Image topic when source:=topic'),
        DeclareLaunchArgument('params_file', default_value='',
                              description='YAML overriding config/<node>.yaml'),
        DeclareLaunchArgument('viz', default_value='true',
                              description='start viz_node (rviz: config/edgent.rviz)'),
        OpaqueFunction(function=_nodes),
    ])
