"""
DDS Security (SROS2) for the nodes: enclave names and the environment a secured node runs in.

The Fast DDS in the PyPI wheels is built without security, and the wheels' rmw_fastrtps refuses
``ROS_SECURITY_ENABLE=true`` at compile time. ``scripts/build_secure_fastdds.sh`` builds the same
versions with ``-DSECURITY=ON``; setup unpacks them into ``<venv>/opt/secure_fastdds/lib``. A
node given a keystore runs with that directory first on ``LD_LIBRARY_PATH`` (the rmw finds its
library there, and the loader the secure ``libfastdds``), ``ROS_SECURITY_ENABLE=true``,
``ROS_SECURITY_STRATEGY=Enforce`` and its own enclave, ``/edgent/<namespace>/<node>``: one
certificate and permissions file per node, so a key taken from one robot names that node only.

No rclpy here: the launch files, the CLI and the tests build the environment from this module.
"""

import os
from pathlib import Path
import sys
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

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
