"""core.security: enclave names, the keystore checks and the environment of a secured node."""

import os
from pathlib import Path

import pytest

from edgent_ros.core import security as sec


def _fake_enclave(store: Path, enclave: str, skip=()):
    where = sec.enclave_dir(store, enclave)
    where.mkdir(parents=True)
    for f in sec.ENCLAVE_FILES:
        if f not in skip:
            (where / f).write_text('x')


def _fake_secure_build(prefix: Path) -> Path:
    lib = prefix / 'opt' / 'secure_fastdds' / 'lib'
    lib.mkdir(parents=True)
    for name in sec.SECURE_LIBS:
        (lib / name).write_text('x')
    (prefix / 'lib' / 'python3.11' / 'site-packages' / 'ros_rcl.libs').mkdir(parents=True)
    return lib


def test_enclave_names_follow_namespace_and_node():
    assert sec.enclave_name('robot1', 'camera_node') == '/edgent/robot1/camera_node'
    assert sec.enclave_name('/robot1/', 'planner_node') == '/edgent/robot1/planner_node'
    assert sec.enclave_name('', 'edge_node') == '/edgent/edge_node'
    assert sec.enclave_name('edge_a', 'edge_node') == '/edgent/edge_a/edge_node'
    with pytest.raises(ValueError, match='plain name'):
        sec.enclave_name('robot1', 'a/b')


def test_fleet_enclaves_one_per_node_no_duplicates():
    got = sec.fleet_enclaves(['robot1', 'robot2'], ['edge_a', 'edge_b'], viz=False)
    assert got == ['/edgent/robot1/camera_node', '/edgent/robot1/planner_node',
                   '/edgent/robot2/camera_node', '/edgent/robot2/planner_node',
                   '/edgent/edge_a/edge_node', '/edgent/edge_b/edge_node']
    one = sec.fleet_enclaves([''], [''])
    assert one == ['/edgent/camera_node', '/edgent/planner_node', '/edgent/viz_node',
                   '/edgent/rviz2', '/edgent/edge_node']
    assert len(sec.fleet_enclaves(['r', 'r'], ['', ''])) == 5


def test_node_env_secures_with_the_secure_libraries_first(tmp_path):
    store = tmp_path / 'ks'
    _fake_enclave(store, '/edgent/robot1/camera_node')
    prefix = tmp_path / 'venv'
    lib = _fake_secure_build(prefix)
    env = sec.node_env(str(store), '/edgent/robot1/camera_node',
                       base={'LD_LIBRARY_PATH': '/usr/local/lib'}, prefix=str(prefix))
    assert env['ROS_SECURITY_ENABLE'] == 'true'
    assert env['ROS_SECURITY_STRATEGY'] == 'Enforce'
    assert env['ROS_SECURITY_KEYSTORE'] == str(store)
    assert env['ROS_SECURITY_ENCLAVE_OVERRIDE'] == '/edgent/robot1/camera_node'
    parts = env['LD_LIBRARY_PATH'].split(os.pathsep)
    # the secure dir before the wheels' (the order the wheels' bootstrap would lose)
    assert parts[0] == str(lib)
    assert parts[1] == str(prefix / 'lib')
    assert parts[-1] == '/usr/local/lib'
    assert env[sec.BOOTSTRAP_DONE] == '1'


def test_node_env_refuses_what_is_missing(tmp_path):
    prefix = tmp_path / 'venv'
    store = tmp_path / 'ks'
    with pytest.raises(sec.SecurityError, match='not an SROS2 keystore'):
        sec.node_env(str(store), '/edgent/edge_node', base={}, prefix=str(prefix))
    _fake_enclave(store, '/edgent/edge_node', skip=('permissions.p7s',))
    with pytest.raises(sec.SecurityError, match='lacks permissions.p7s'):
        sec.node_env(str(store), '/edgent/edge_node', base={}, prefix=str(prefix))
    with pytest.raises(sec.SecurityError, match='enclave /edgent/robot9/camera_node lacks'):
        sec.node_env(str(store), '/edgent/robot9/camera_node', base={}, prefix=str(prefix))
    (sec.enclave_dir(store, '/edgent/edge_node') / 'permissions.p7s').write_text('x')
    # keystore fine, but no secure build: never start "secured" on the insecure Fast DDS
    with pytest.raises(sec.SecurityError, match='security disabled'):
        sec.node_env(str(store), '/edgent/edge_node', base={}, prefix=str(prefix))
    lib = _fake_secure_build(prefix)
    (lib / 'librmw_fastrtps_cpp.so').unlink()
    with pytest.raises(sec.SecurityError, match='lacks librmw_fastrtps_cpp.so'):
        sec.node_env(str(store), '/edgent/edge_node', base={}, prefix=str(prefix))


def test_secure_lib_dir_override_and_plain_env(tmp_path):
    assert sec.secure_lib_dir('/p', {}) == Path('/p/opt/secure_fastdds/lib')
    assert sec.secure_lib_dir('/p', {sec.SECURE_DIR_ENV: str(tmp_path)}) == tmp_path
    plain = sec.plain_env({'ROS_SECURITY_ENABLE': 'true', 'ROS_SECURITY_KEYSTORE': '/k',
                           'ROS_DOMAIN_ID': '5'})
    assert plain == {'ROS_DOMAIN_ID': '5'}


def test_parse_enclaves():
    assert sec.parse_enclaves(' /a/b , /c ') == ('/a/b', '/c')
    assert sec.parse_enclaves('') == ()
    with pytest.raises(ValueError, match='absolute'):
        sec.parse_enclaves('a/b')
