"""Shared pieces of the edgent_ros launch files (not a launch file itself)."""

import os

from ament_index_python.packages import get_package_share_directory
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def config(name):
    """Return the installed per-node parameter file ``config/<name>.yaml``."""
    return os.path.join(get_package_share_directory('edgent_ros'), 'config', f'{name}.yaml')


def param_files(context, name):
    """Return the package's defaults for ``name`` plus the user's ``params_file``, if any."""
    files = [config(name)]
    user = LaunchConfiguration('params_file').perform(context)
    if user:
        files.append(user)
    return files


def camera(context, namespace, extra=None):
    """Return a camera_node in ``namespace`` with the launch arguments applied."""
    overrides = {'source': LaunchConfiguration('source').perform(context),
                 'deadline_ms': float(LaunchConfiguration('deadline_ms').perform(context)),
                 'frame_id': f'{namespace}/camera' if namespace else 'camera'}
    overrides.update(extra or {})
    return Node(package='edgent_ros', executable='camera_node', name='camera_node',
                namespace=namespace, output='screen',
                parameters=param_files(context, 'camera_node') + [overrides],
                remappings=[('image_raw', LaunchConfiguration('image_topic').perform(context))])


def planner(context, namespace, edge_node='edge_node'):
    """Return a planner_node in ``namespace`` driving that namespace's camera_node."""
    overrides = {'deadline_ms': float(LaunchConfiguration('deadline_ms').perform(context)),
                 'policy': LaunchConfiguration('policy').perform(context),
                 'edge_node': edge_node}
    return Node(package='edgent_ros', executable='planner_node', name='planner_node',
                namespace=namespace, output='screen',
                parameters=param_files(context, 'planner_node') + [overrides])


def viz(namespace):
    """Return a viz_node in ``namespace`` (annotated image, markers, diagnostics for rviz)."""
    return Node(package='edgent_ros', executable='viz_node', name='viz_node',
                namespace=namespace, output='screen')


def edge(context, robot_namespaces):
    """Return an edge_node in the root namespace serving ``robot_namespaces``."""
    return Node(package='edgent_ros', executable='edge_node', name='edge_node', output='screen',
                parameters=param_files(context, 'edge_node')
                + [{'robot_namespaces': robot_namespaces}])
