"""
DDS Security (SROS2) for the nodes: enclave names and the environment a secured node runs in.

The Fast DDS in the PyPI wheels is built without security, and the wheels' rmw_fastrtps refuses
``ROS_SECURITY_ENABLE=true`` at compile time. ``scripts/build_secure_fastdds.sh`` builds the same
versions with ``-DSECURITY=ON``; setup unpacks them into ``<venv>/opt/secure_fastdds/lib``. A
node given a keystore runs with that directory first on ``LD_LIBRARY_PATH`` (the rmw finds its
library there, and the loader the secure ``libfastdds``), ``ROS_SECURITY_ENABLE=true``,
``ROS_SECURITY_STRATEGY=Enforce`` and its own enclave, ``/edgent/<namespace>/<node>``: one
certificate and permissions file per node, so a key taken from one robot names that node only.

Least privilege (``fleet_grants``): each node's permissions name the topics it publishes and
subscribes and the services it serves and calls, in its own namespace, so a key taken from one
robot's camera can neither steer that robot's camera (only its planner may call the parameter
services) nor publish another robot's tensors, and a viz key reads but never writes tensors.
``policy_xml`` writes them as an sros2 policy (``ros2 security create_permission`` reads the same
file). Enclaves outside the fleet (tools, drivers) keep sros2's default: every topic.

No rclpy here: the launch files, the CLI and the tests build the environment from this module.
"""

from dataclasses import dataclass
import os
from pathlib import Path
import sys
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple
from xml.sax.saxutils import quoteattr

SECURE_DIR_ENV = 'EDGENT_SECURE_FASTDDS_LIB'
ENCLAVE_ROOT = '/edgent'
# what a secure node must find in the secure library directory
SECURE_LIBS = ('libfastdds.so.3.2', 'librmw_fastrtps_shared_cpp.so', 'librmw_fastrtps_cpp.so')
# the files the rmw reads from an enclave (rmw_security_common); all must be there
ENCLAVE_FILES = ('identity_ca.cert.pem', 'cert.pem', 'key.pem', 'permissions_ca.cert.pem',
                 'governance.p7s', 'permissions.p7s')
BOOTSTRAP_DONE = '_ROS_WHEELS_BOOTSTRAP_COMPLETE'


class SecurityError(ValueError):
    """A secured node cannot start: a missing keystore, enclave or secure Fast DDS build."""


def secure_lib_dir(prefix: Optional[str] = None,
                   env: Optional[Mapping[str, str]] = None) -> Path:
    """Return the secure Fast DDS libraries' directory (``$EDGENT_SECURE_FASTDDS_LIB``)."""
    env = os.environ if env is None else env
    if env.get(SECURE_DIR_ENV):
        return Path(env[SECURE_DIR_ENV])
    return Path(prefix or sys.prefix) / 'opt' / 'secure_fastdds' / 'lib'


def secure_build_missing(lib_dir: Path) -> Optional[str]:
    """Return why ``lib_dir`` cannot serve a secured node, or None when it can."""
    if not lib_dir.is_dir():
        return (f'no Fast DDS built with DDS Security at {lib_dir} (./scripts/setup.sh unpacks '
                f'third_party/secure_fastdds there; the PyPI Fast DDS has security disabled)')
    absent = [name for name in SECURE_LIBS if not (lib_dir / name).exists()]
    if absent:
        return f'{lib_dir} lacks {", ".join(absent)}: rerun ./scripts/setup.sh'
    return None


def enclave_name(namespace: str, node: str) -> str:
    """Return the enclave of ``node`` in ``namespace``: ``/edgent/robot1/camera_node``."""
    if not node or '/' in node:
        raise ValueError(f'node name {node!r}: expected a plain name such as camera_node')
    parts = [p for p in namespace.split('/') if p]
    return '/'.join([ENCLAVE_ROOT] + parts + [node])


def fleet_enclaves(robots: Sequence[str], edges: Sequence[str] = ('',),
                   viz: bool = True) -> List[str]:
    """
    Return the enclaves a fleet needs: camera, planner (viz, rviz2) per robot, one per edge.

    ``robots``: robot namespaces ('' = the root); ``edges``: edge names ('' = the one edge,
    in the root namespace).
    """
    out = []
    for robot in robots:
        nodes = ('camera_node', 'planner_node') + (('viz_node', 'rviz2') if viz else ())
        out += [enclave_name(robot, n) for n in nodes]
    out += [enclave_name(edge, 'edge_node') for edge in edges]
    seen = set()
    return [e for e in out if not (e in seen or seen.add(e))]


def enclave_dir(keystore: Path, enclave: str) -> Path:
    """Return the directory of ``enclave`` in ``keystore`` (sros2's layout)."""
    return keystore / 'enclaves' / enclave.strip('/')


def check_enclave(keystore: Path, enclave: str) -> None:
    """Raise SecurityError unless ``keystore`` holds every file of ``enclave``."""
    if not (keystore / 'enclaves').is_dir():
        raise SecurityError(f'keystore {keystore}: not an SROS2 keystore (no enclaves/); '
                            f'create one with: edgent-ros keystore {keystore}')
    where = enclave_dir(keystore, enclave)
    absent = [f for f in ENCLAVE_FILES if not (where / f).exists()]
    if absent:
        raise SecurityError(f'keystore {keystore}: enclave {enclave} lacks {", ".join(absent)} '
                            f'(add it with: edgent-ros keystore {keystore} --enclave {enclave})')


def ros_lib_dirs(prefix: str) -> List[str]:
    """Return the wheels' library directories: ``<prefix>/lib`` and every ``ros_*.libs``."""
    site = Path(prefix) / 'lib' / f'python{sys.version_info[0]}.{sys.version_info[1]}' / \
        'site-packages'
    return [str(Path(prefix) / 'lib')] + sorted(str(p) for p in site.glob('ros_*.libs'))


def _merge_paths(first: Iterable[str], rest: str) -> str:
    out: List[str] = []
    for part in list(first) + rest.split(os.pathsep):
        if part and part not in out:
            out.append(part)
    return os.pathsep.join(out)


def node_env(keystore: str, enclave: str, base: Optional[Mapping[str, str]] = None,
             prefix: Optional[str] = None) -> Dict[str, str]:
    """
    Return the environment variables that make a node start secured in ``enclave``.

    Raises SecurityError (naming what to do) when the keystore, the enclave or the secure
    build is missing: a node is never started "secured" with security silently off.
    The wheels' bootstrap re-executes Python with ``LD_LIBRARY_PATH`` built from a set, which
    loses the order; the order matters here, so the full path is set and the bootstrap marked done.
    """
    base = os.environ if base is None else base
    prefix = prefix or sys.prefix
    store = Path(os.path.abspath(os.path.expanduser(keystore)))
    check_enclave(store, enclave)
    lib = secure_lib_dir(prefix, base)
    why = secure_build_missing(lib)
    if why:
        raise SecurityError(why)
    return {
        'ROS_SECURITY_KEYSTORE': str(store),
        'ROS_SECURITY_ENABLE': 'true',
        'ROS_SECURITY_STRATEGY': 'Enforce',
        'ROS_SECURITY_ENCLAVE_OVERRIDE': enclave,
        'LD_LIBRARY_PATH': _merge_paths([str(lib)] + ros_lib_dirs(prefix),
                                        base.get('LD_LIBRARY_PATH', '')),
        BOOTSTRAP_DONE: '1',
    }


def plain_env(base: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """Return ``base`` without any security setting: how an unenrolled participant starts."""
    base = os.environ if base is None else base
    drop = ('ROS_SECURITY_KEYSTORE', 'ROS_SECURITY_ENABLE', 'ROS_SECURITY_STRATEGY',
            'ROS_SECURITY_ENCLAVE_OVERRIDE', SECURE_DIR_ENV)
    return {k: v for k, v in base.items() if k not in drop}


def parse_enclaves(text: str) -> Tuple[str, ...]:
    """Split a comma-separated enclave list, each checked to start with ``/``."""
    out = tuple(e.strip() for e in text.split(',') if e.strip())
    bad = [e for e in out if not e.startswith('/')]
    if bad:
        raise ValueError(f'enclaves {bad}: each must be an absolute name such as '
                         f'{ENCLAVE_ROOT}/robot1/camera_node')
    return out


# what every rclpy node does: its log, parameter events and diagnostics out, the sim clock in,
# and the services rclpy creates for it (parameters, type descriptions)
PARAM_SERVICES = ('describe_parameters', 'get_parameter_types', 'get_parameters',
                  'list_parameters', 'set_parameters', 'set_parameters_atomically')
NODE_SERVICES = PARAM_SERVICES + ('get_type_description',)
NODE_PUBLISH = ('/rosout', '/parameter_events', '/diagnostics')
NODE_SUBSCRIBE = ('/clock',)


@dataclass(frozen=True)
class Grant:
    """What one node may do: topics it publishes/subscribes, services it serves/calls."""

    namespace: str           # '/robot1' or '/'
    node: str
    publish: Tuple[str, ...]
    subscribe: Tuple[str, ...]
    reply: Tuple[str, ...]
    request: Tuple[str, ...]


def _ns(namespace: str) -> str:
    parts = [p for p in namespace.split('/') if p]
    return '/' + '/'.join(parts) if parts else ''


def _services(node_fqn: str, names: Sequence[str]) -> Tuple[str, ...]:
    return tuple(f'{node_fqn}/{n}' for n in names)


def _edge_topics(robot: str, edge: str) -> Tuple[str, str]:
    """Return (tensor, result) between ``robot`` and ``edge`` ('' = the one edge)."""
    base = f'{_ns(robot)}/edgent/' + (f'{edge}/' if edge else '')
    return base + 'tensor', base + 'result'


def _grant(namespace: str, node: str, publish: Sequence[str] = (),
           subscribe: Sequence[str] = (), request: Sequence[str] = (),
           reply: Sequence[str] = ()) -> Grant:
    ns = _ns(namespace)
    return Grant(ns or '/', node, tuple(dict.fromkeys(tuple(publish) + NODE_PUBLISH)),
                 tuple(dict.fromkeys(tuple(subscribe) + NODE_SUBSCRIBE)),
                 tuple(dict.fromkeys(_services(f'{ns}/{node}', NODE_SERVICES) + tuple(reply))),
                 tuple(dict.fromkeys(request)))


def fleet_grants(robots: Sequence[str], edges: Sequence[str] = ('',),
                 viz: bool = True) -> Dict[str, Grant]:
    """
    Return each fleet enclave's grant (``fleet_enclaves``'s names), least privilege per node.

    - camera_node: publishes its tensors to each edge, its results, outcomes, frames and link
      quality; reads each edge's results and ``image_raw``; calls no service.
    - planner_node: reads link quality and outcomes, publishes decisions, and is the only node
      that calls the camera's parameter services (and the edges', its advisory warm-up; its
      default ``edge_node`` resolves in its namespace, so that name too).
    - edge_node: reads the tensors and publishes the results of the robots of ``robots`` only.
    - viz_node: reads frames, outcomes, link quality and decisions; publishes the annotated
      image and markers. rviz2: reads its robot's topics and tf, publishes its tools' topics.
    The whole fleet is needed for each edge's grant: pass every robot and every edge.
    """
    edge_nodes = [f'{_ns(e)}/edge_node' for e in edges]
    out: Dict[str, Grant] = {}
    for robot in robots:
        ns = _ns(robot)
        pairs = [_edge_topics(robot, e) for e in edges]
        out[enclave_name(robot, 'camera_node')] = _grant(
            robot, 'camera_node',
            publish=[t for t, _ in pairs] + [f'{ns}/edgent/{t}' for t in (
                'result', 'outcome', 'frame', 'link_quality')],
            subscribe=[r for _, r in pairs] + [f'{ns}/image_raw'])
        targets = [f'{ns}/camera_node'] + edge_nodes + [f'{ns}/edge_node']
        out[enclave_name(robot, 'planner_node')] = _grant(
            robot, 'planner_node', publish=[f'{ns}/edgent/decision'],
            subscribe=[f'{ns}/edgent/link_quality', f'{ns}/edgent/outcome'],
            request=[s for t in dict.fromkeys(targets) for s in _services(t, PARAM_SERVICES)])
        if viz:
            out[enclave_name(robot, 'viz_node')] = _grant(
                robot, 'viz_node', publish=[f'{ns}/edgent/annotated', f'{ns}/edgent/markers'],
                subscribe=[f'{ns}/edgent/{t}' for t in (
                    'frame', 'outcome', 'link_quality', 'decision')])
            out[enclave_name(robot, 'rviz2')] = _grant(
                robot, 'rviz2', publish=['/clicked_point', '/goal_pose', '/initialpose'],
                subscribe=[f'{ns}/*', '/tf', '/tf_static'], reply=[f'{ns}/*'])
    for edge in edges:
        pairs = [_edge_topics(robot, edge) for robot in robots]
        out[enclave_name(edge, 'edge_node')] = _grant(
            edge, 'edge_node', publish=[r for _, r in pairs], subscribe=[t for t, _ in pairs])
    return out


def policy_xml(grants: Mapping[str, Grant]) -> str:
    """Return ``grants`` as an sros2 policy (format 0.2.0; every name absolute)."""
    def block(tag: str, item: str, attr: str, names: Sequence[str]) -> List[str]:
        if not names:
            return []
        return ([f'          <{tag} {attr}="ALLOW">']
                + [f'            <{item}>{n}</{item}>' for n in names]
                + [f'          </{tag}>'])
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             '<!-- edgent-ros keystore: least privilege per node (core/security.py) -->',
             '<policy version="0.2.0">', '  <enclaves>']
    for enclave, g in grants.items():
        lines += [f'    <enclave path={quoteattr(enclave)}>', '      <profiles>',
                  f'        <profile ns={quoteattr(g.namespace)} node={quoteattr(g.node)}>']
        lines += block('topics', 'topic', 'publish', g.publish)
        lines += block('topics', 'topic', 'subscribe', g.subscribe)
        lines += block('services', 'service', 'reply', g.reply)
        lines += block('services', 'service', 'request', g.request)
        lines += ['        </profile>', '      </profiles>', '    </enclave>']
    lines += ['  </enclaves>', '</policy>', '']
    return '\n'.join(lines)
