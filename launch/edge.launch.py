"""
Edge PC: edge_node serving one or more robots, e.g. ``robot_namespaces:=robot1,robot2``.

One of several edge PCs also gets ``edge_name:=edge_a`` (the robots' ``edges`` list names it).

Parameters: config/edge_node.yaml, then ``params_file``, then the arguments set on the command
line (edgent_ros.nodes.launch_args; ``ros2 launch ... --show-args`` lists them).
"""

from launch import LaunchDescription
from launch.actions import OpaqueFunction

from edgent_ros.nodes import launch_args as la

ARGS = ('robot_namespaces', 'edge_name', 'model', 'params_file', 'use_sim_time', 'log_level',
        'respawn', 'respawn_delay', 'keystore')


def _nodes(context):
    return [la.edge(context)]


def generate_launch_description():
    """Declare the arguments and start the edge node."""
    return LaunchDescription(la.declare(ARGS) + [OpaqueFunction(function=_nodes)])
