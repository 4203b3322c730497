"""
Robot side: camera_node + planner_node (+ viz_node, rviz2) in the robot's namespace.

``ros2 launch edgent_ros robot.launch.py namespace:=robot1 deadline_ms:=100`` (with two edge
PCs: ``edges:=edge_a,edge_b``, the first preferred). Parameters:
config/<node>.yaml, then ``params_file``, then the arguments set on the command line
(edgent_ros.nodes.launch_args; ``ros2 launch ... --show-args`` lists them).
"""

from launch import LaunchDescription
from launch.actions import OpaqueFunction

from edgent_ros.nodes import launch_args as la

ARGS = ('namespace', 'edges', 'model', 'deadline_ms', 'policy', 'source', 'frame_id', 'edge_node',
        'image_topic', 'params_file', 'use_sim_time', 'log_level', 'respawn', 'respawn_delay',
        'viz', 'rviz', 'keystore')


def _nodes(context):
    ns = la.arg(context, 'namespace').strip('/')
    nodes = [la.camera(context, ns), la.planner(context, ns)]
    if la.flag(la.arg(context, 'viz'), 'viz'):
        nodes.append(la.viz(context, ns))
    return nodes + la.rviz(context, ns)


def generate_launch_description():
    """Declare the arguments and start camera and planner in the robot's namespace."""
    return LaunchDescription(la.declare(ARGS) + [OpaqueFunction(function=_nodes)])
