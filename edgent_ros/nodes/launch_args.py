"""
Launch arguments and node actions shared by the package's launch files (launch/*.launch.py).

A node's parameters come in layers, later ones winning:

1. the package's ``config/<node>.yaml`` (every declared key with its default);
2. the launch file's own choices (the demo's planners leave the shared edge alone);
3. the user's ``params_file``;
4. the launch arguments the user set on the command line.

So a parameter-setting argument (``deadline_ms``, ``policy``, ``source``, ``frame_id``,
``edge_node``, ``robot_namespaces``, ``use_sim_time``) defaults to ``''``, meaning "not set":
only a non-empty value becomes an override, and what the user's YAML says otherwise holds.
The launch files import this module from the installed package (no ``sys.path`` tricks).
"""

import os
import shutil
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from ament_index_python.packages import get_package_prefix, get_package_share_directory
from ament_index_python.packages import PackageNotFoundError
from launch.action import Action
from launch.actions import DeclareLaunchArgument, ExecuteProcess, LogInfo
from launch.launch_context import LaunchContext
from launch_ros.actions import Node

from ..core.security import enclave_name, node_env

PACKAGE = 'edgent_ros'
NOT_SET = ''
LOG_LEVELS = ('debug', 'info', 'warn', 'error', 'fatal')
_TRUE = ('true', '1', 'yes', 'on')
_FALSE = ('false', '0', 'no', 'off')

# launch argument -> (default, description); '' = not set (the YAML's value holds)
ARGUMENTS: Dict[str, Tuple[str, str]] = {
    'namespace': ('', 'robot namespace, e.g. robot1 ("" = root)'),
    'robots': ('robot1,robot2', 'comma-separated robot namespaces, each with a camera_node and '
                                'planner_node sharing one edge_node ("" = one robot in the root '
                                'namespace)'),
    'robot_namespaces': (NOT_SET, 'edge_node: comma-separated robot namespaces it serves ("" = '
                                  'not set: params_file, else config/edge_node.yaml: root)'),
    'deadline_ms': (NOT_SET, 'latency deadline per frame (ms) for camera_node and planner_node '
                             '(not set: params_file, else config/*.yaml: 200)'),
    'policy': (NOT_SET, 'planner_node policy: edgent | device-only | edge-only | partition-only '
                        '| exit-only | true-bandwidth | fixed (not set: params_file, else '
                        'edgent)'),
    'source': (NOT_SET, 'camera_node image source: sample | cifar10-test | topic (not set: '
                        'params_file, else sample)'),
    'frame_id': (NOT_SET, 'camera_node header.frame_id, the camera optical TF frame (not set: '
                          'params_file, else config: camera_optical_frame)'),
    'edges': (NOT_SET, 'several edge PCs: comma-separated edge names in order of preference '
                       '(camera_node parameter edges, core.edges; robot: the camera\'s list; '
                       'demo: one edge_node per name, each robot\'s list rotated so the robots '
                       'spread over them; not set: one edge)'),
    'edge_name': (NOT_SET, 'edge_node: its name among several edges (it serves '
                           '<robot>/edgent/<edge_name>/tensor; the node runs in namespace '
                           '<edge_name>; not set: the one edge)'),
    'edge_node': (NOT_SET, 'planner_node: the edge node it tells the chosen exit/split (not '
                           "set: params_file, else config: edge_node; the demo: '' = none)"),
    'model': (NOT_SET, 'model description (YAML/JSON) for camera_node, planner_node and '
                       'edge_node: all three must run the same model (not set: params_file, '
                       'else the shipped AlexNet)'),
    'image_topic': ('image_raw', 'sensor_msgs/Image topic remapped to the camera image_raw '
                                 '(source:=topic)'),
    'params_file': (NOT_SET, 'YAML with <node>: ros__parameters: ... applied after '
                             'config/<node>.yaml (command-line launch arguments still win)'),
    'use_sim_time': (NOT_SET, 'true | false: use /clock on every node (not set: params_file, '
                              'else false)'),
    'log_level': (NOT_SET, 'debug | info | warn | error | fatal for every node (not set: info)'),
    'respawn': ('false', 'true: restart a node that exits while the launch runs'),
    'respawn_delay': ('2.0', 'seconds to wait before a respawn (respawn:=true)'),
    'viz': ('true', 'start viz_node (annotated image, markers, diagnostics for rviz)'),
    'rviz': ('false', 'start rviz2 with config/edgent.rviz (skipped with a message when rviz2 '
                      'is not installed)'),
    'keystore': (NOT_SET, 'SROS2 keystore (edgent-ros keystore): every node runs with DDS '
                          'Security enforced in its enclave /edgent/<namespace>/<node>, on the '
                          'Fast DDS built with security (not set: no security)'),
}

# parameter-setting launch argument -> (type, nodes it reaches); the parameter has its name
ALL_NODES = ('camera_node', 'planner_node', 'edge_node', 'viz_node', 'rviz2')
OVERRIDES: Dict[str, Tuple[type, Tuple[str, ...]]] = {
    'deadline_ms': (float, ('camera_node', 'planner_node')),
    'policy': (str, ('planner_node',)),
    'source': (str, ('camera_node',)),
    'frame_id': (str, ('camera_node',)),
    'edge_node': (str, ('planner_node',)),
    'edges': (list, ('camera_node',)),
    'edge_name': (str, ('edge_node',)),
    'robot_namespaces': (list, ('edge_node',)),
    'use_sim_time': (bool, ALL_NODES),
    'model': (str, ('camera_node', 'planner_node', 'edge_node')),
}

Params = List[Union[str, Dict[str, Any]]]


def declare(names: Sequence[str], **defaults: str) -> List[DeclareLaunchArgument]:
    """Declare the launch arguments ``names`` (described in ``ARGUMENTS``), defaults changeable."""
    unknown = set(defaults) - set(names)
    if unknown:
        raise ValueError(f'defaults for undeclared launch arguments: {sorted(unknown)}')
    return [DeclareLaunchArgument(n, default_value=defaults.get(n, ARGUMENTS[n][0]),
                                  description=ARGUMENTS[n][1]) for n in names]


def arg(context: LaunchContext, name: str) -> str:
    """Return launch argument ``name`` as given (stripped); its default if not declared here."""
    return context.launch_configurations.get(name, ARGUMENTS[name][0]).strip()


def flag(text: str, name: str) -> bool:
    """Parse a boolean launch argument (true/false, 1/0, yes/no, on/off)."""
    low = text.strip().lower()
    if low in _TRUE or low in _FALSE:
        return low in _TRUE
    raise ValueError(f'launch argument {name}:={text!r}: expected true or false')


def names_list(text: str) -> List[str]:
    """Split a comma-separated namespace list (``'robot1, /robot2'``: robot1 and robot2)."""
    return [r.strip().strip('/') for r in text.split(',')]


def _typed(name: str, text: str) -> Any:
    kind = OVERRIDES[name][0]
    if kind is float:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f'launch argument {name}:={text!r}: expected a number') from None
    if kind is bool:
        return flag(text, name)
    if kind is list:
        return names_list(text)
    return text


def overrides(context: LaunchContext, node: str) -> Dict[str, Any]:
    """Return the parameters of ``node`` set on the command line (launch arguments not '')."""
    out = {}
    for name, (_, nodes) in OVERRIDES.items():
        text = arg(context, name)
        if node in nodes and text != NOT_SET:
            out[name] = _typed(name, text)
    return out


def share(*parts: str) -> str:
    """Return the path of a file installed in the package's share directory."""
    return os.path.join(get_package_share_directory(PACKAGE), *parts)


def config(name: str) -> str:
    """Return the installed per-node parameter file ``config/<name>.yaml``."""
    return share('config', f'{name}.yaml')


def parameter_layers(context: LaunchContext, node: str,
                     launch_defaults: Optional[Mapping[str, Any]] = None) -> Params:
    """
    Return ``node``'s parameter layers in precedence order, lowest first.

    The package's ``config/<node>.yaml`` (if the node has one), the launch file's own
    ``launch_defaults``, the user's ``params_file``, then the command-line overrides.
    """
    layers: Params = []
    if os.path.isfile(config(node)):
        layers.append(config(node))
    if launch_defaults:
        layers.append(dict(launch_defaults))
    user = arg(context, 'params_file')
    if user:
        path = os.path.abspath(os.path.expanduser(user))
        if not os.path.isfile(path):
            raise ValueError(f'launch argument params_file:={user!r}: no such file')
        layers.append(path)
    cmdline = overrides(context, node)
    if cmdline:
        layers.append(cmdline)
    return layers


def ros_arguments(context: LaunchContext) -> List[str]:
    """Return ``['--log-level', level]`` when ``log_level`` is set, else ``[]``."""
    level = arg(context, 'log_level').lower()
    if level == NOT_SET:
        return []
    if level not in LOG_LEVELS:
        raise ValueError(f'launch argument log_level:={level!r}: expected one of '
                         f'{", ".join(LOG_LEVELS)}')
    return ['--log-level', level]


def respawn(context: LaunchContext) -> Dict[str, Any]:
    """Return the ``respawn`` / ``respawn_delay`` keyword arguments of a node action."""
    on = flag(arg(context, 'respawn'), 'respawn')
    text = arg(context, 'respawn_delay')
    try:
        delay = float(text)
    except ValueError:
        delay = -1.0
    if not delay >= 0.0:
        raise ValueError(f'launch argument respawn_delay:={text!r}: expected seconds >= 0')
    return {'respawn': on, 'respawn_delay': delay}


def security_env(context: LaunchContext, namespace: str, name: str) -> Dict[str, Any]:
    """
    Return ``{'additional_env': ...}`` that secures node ``name`` when ``keystore`` is set.

    Raises core.security.SecurityError (the launch stops, naming the missing keystore, enclave
    or secure build) rather than start a node unsecured that was asked to be secured.
    """
    keystore = arg(context, 'keystore')
    if keystore == NOT_SET:
        return {}
    return {'additional_env': node_env(keystore, enclave_name(namespace, name))}


def node(context: LaunchContext, executable: str, namespace: str = '',
         launch_defaults: Optional[Mapping[str, Any]] = None,
         fixed: Optional[Mapping[str, Any]] = None, **kwargs: Any) -> Node:
    """
    Return one of our nodes with its parameter layers, log level and respawn settings.

    ``fixed`` parameters go last, above the command line: only for what the launch file's
    structure decides (the robots the demo's edge serves are the robots it starts).
    """
    layers = parameter_layers(context, executable, launch_defaults)
    if fixed:
        layers.append(dict(fixed))
    return Node(package=PACKAGE, executable=executable, name=executable, namespace=namespace,
                output='screen', parameters=layers, ros_arguments=ros_arguments(context),
                **respawn(context), **security_env(context, namespace, executable), **kwargs)


def camera(context: LaunchContext, namespace: str,
           edges: Optional[List[str]] = None,
           launch_defaults: Optional[Mapping[str, Any]] = None) -> Node:
    """
    Return a camera_node in ``namespace``, its ``image_raw`` remapped to ``image_topic``.

    ``edges``: the edges the launch file starts, in this robot's order (fixed, like the edge's
    robots); None leaves it to the layers. ``launch_defaults``: the launch file's choices.
    """
    return node(context, 'camera_node', namespace, launch_defaults,
                fixed=None if edges is None else {'edges': list(edges)},
                remappings=[('image_raw', arg(context, 'image_topic') or 'image_raw')])


def planner(context: LaunchContext, namespace: str,
            launch_defaults: Optional[Mapping[str, Any]] = None) -> Node:
    """Return a planner_node in ``namespace`` driving that namespace's camera_node."""
    return node(context, 'planner_node', namespace, launch_defaults)


def edge(context: LaunchContext, robot_namespaces: Optional[List[str]] = None,
         edge_name: Optional[str] = None) -> Node:
    """
    Return an edge_node: in the root namespace, or in ``edge_name`` when it is one of several.

    ``robot_namespaces``, the robots a launch file starts beside it, is fixed (the edge must
    serve them); ``None`` leaves it to the layers (``robot_namespaces`` launch argument,
    params_file, config). ``edge_name`` None: the ``edge_name`` launch argument, if set.
    """
    fixed = {} if robot_namespaces is None else {'robot_namespaces': list(robot_namespaces)}
    if edge_name is None:
        edge_name = arg(context, 'edge_name')
    else:
        fixed['edge_name'] = edge_name
    # in namespace edge_name: still node edge_node, so config/edge_node.yaml (/**/edge_node)
    # applies; its topics are absolute (/<robot>/edgent/<edge_name>/...)
    return node(context, 'edge_node', edge_name or '', fixed=fixed or None)


def viz(context: LaunchContext, namespace: str) -> Node:
    """Return a viz_node in ``namespace`` (annotated image, markers, diagnostics for rviz)."""
    return node(context, 'viz_node', namespace)


def rviz_executable() -> Optional[str]:
    """Return the rviz2 executable (ROS install or PATH), or None when there is none."""
    try:
        path = os.path.join(get_package_prefix('rviz2'), 'lib', 'rviz2', 'rviz2')
        if os.access(path, os.X_OK):
            return path
    except PackageNotFoundError:
        pass
    return shutil.which('rviz2')


def rviz(context: LaunchContext, namespace: str) -> List[Action]:
    """
    Return rviz2 with ``config/edgent.rviz`` in ``namespace`` if ``rviz:=true``.

    Where rviz2 is not installed, return a message instead, so the rest of the launch goes on.
    """
    if not flag(arg(context, 'rviz'), 'rviz'):
        return []
    cfg = share('config', 'edgent.rviz')
    exe = rviz_executable()
    if exe is None:
        remap = f' --ros-args -r __ns:=/{namespace}' if namespace else ''
        return [LogInfo(msg=f'rviz:=true but rviz2 is not installed here: continuing without '
                            f'it (where rviz2 is: rviz2 -d {cfg}{remap})')]
    ros_args = ['--ros-args'] + (['-r', f'__ns:=/{namespace}'] if namespace else [])
    for k, v in overrides(context, 'rviz2').items():
        ros_args += ['-p', f'{k}:={str(v).lower()}']
    return [ExecuteProcess(cmd=[exe, '-d', cfg] + ros_args + ros_arguments(context),
                           output='screen', **security_env(context, namespace, 'rviz2'))]
