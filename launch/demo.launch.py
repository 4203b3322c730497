"""
Everything on one host: one edge_node shared by the robots in ``robots`` (default two).

``edges:=edge_a,edge_b`` starts one edge_node per name instead, each serving every robot; robot
k's camera gets the list rotated by k (``core.edges``), so the robots spread over the edges and
move to another when theirs stops answering.

Parameters: config/<node>.yaml, then this file's choice (the planners leave the shared edge
alone: ``edge_node: ''``; the cameras' probe pairs grow to 8 MiB, what measures a one-host
path), then ``params_file``, then the arguments set on the command line
(edgent_ros.nodes.launch_args; ``ros2 launch ... --show-args`` lists them). The edge serves
exactly the robots started here.
"""

from launch import LaunchDescription
from launch.actions import OpaqueFunction

from edgent_ros.core.edges import check_edge_names, rotated
from edgent_ros.nodes import launch_args as la

ARGS = ('robots', 'edges', 'model', 'deadline_ms', 'policy', 'source', 'frame_id', 'edge_node',
        'image_topic', 'params_file', 'use_sim_time', 'log_level', 'respawn', 'respawn_delay',
        'viz', 'rviz', 'keystore')
# the edge is shared: its exit/split are advisory, so the planners leave it alone
PLANNER_DEFAULTS = {'edge_node': ''}
# one host: the DDS path carries several Gbit/s, and only probe pairs of 8 MiB resolve it
CAMERA_DEFAULTS = {'probe_max_bytes': 8 * 1024 * 1024}


def _nodes(context):
    robots = la.names_list(la.arg(context, 'robots'))
    text = la.arg(context, 'edges')
    edges = check_edge_names(la.names_list(text)) if text else []
    nodes = [la.edge(context, robots, name) for name in edges] or [la.edge(context, robots)]
    for k, ns in enumerate(robots):
        nodes += [la.camera(context, ns, rotated(edges, k) if edges else None, CAMERA_DEFAULTS),
                  la.planner(context, ns, PLANNER_DEFAULTS)]
        if la.flag(la.arg(context, 'viz'), 'viz'):
            nodes.append(la.viz(context, ns))
        nodes += la.rviz(context, ns)
    return nodes


def generate_launch_description():
    """Declare the arguments and start edge, cameras and planners."""
    return LaunchDescription(la.declare(ARGS) + [OpaqueFunction(function=_nodes)])
