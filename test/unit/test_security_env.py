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


def test_fleet_grants_least_privilege_per_node():
    g = sec.fleet_grants(['robot1', 'robot2'], ['edge_a', 'edge_b'])
    assert list(g) == sec.fleet_enclaves(['robot1', 'robot2'], ['edge_a', 'edge_b'])
    cam = g['/edgent/robot1/camera_node']
    assert {'/robot1/edgent/edge_a/tensor', '/robot1/edgent/edge_b/tensor',
            '/robot1/edgent/outcome', '/robot1/edgent/link_quality'} <= set(cam.publish)
    assert {'/robot1/edgent/edge_a/result', '/robot1/image_raw'} <= set(cam.subscribe)
    assert cam.request == () and '/robot1/camera_node/set_parameters' in cam.reply
    # nobody but robot1's planner may call robot1's camera's parameter services
    setter = '/robot1/camera_node/set_parameters_atomically'
    assert [e for e, x in g.items() if setter in x.request] == ['/edgent/robot1/planner_node']
    # only robot1's camera publishes robot1's tensors, only edge_a reads those sent to edge_a
    tensor = '/robot1/edgent/edge_a/tensor'
    assert [e for e, x in g.items() if tensor in x.publish] == ['/edgent/robot1/camera_node']
    assert [e for e, x in g.items() if tensor in x.subscribe] == ['/edgent/edge_a/edge_node']
    edge = g['/edgent/edge_a/edge_node']
    assert set(edge.subscribe) == {'/robot1/edgent/edge_a/tensor',
                                   '/robot2/edgent/edge_a/tensor', '/clock'}
    assert '/robot2/edgent/edge_a/result' in edge.publish and edge.request == ()
    viz = g['/edgent/robot1/viz_node']
    assert not any(t.endswith('tensor') for t in viz.publish + viz.subscribe)
    # one robot in the root namespace, the one edge
    root = sec.fleet_grants([''], [''], viz=False)
    assert '/edgent/tensor' in root['/edgent/camera_node'].publish
    assert '/edgent/tensor' in root['/edgent/edge_node'].subscribe
    assert '/camera_node/set_parameters' in root['/edgent/planner_node'].request


def test_policy_xml_is_an_sros2_policy_of_the_grants():
    import xml.etree.ElementTree as ET
    g = sec.fleet_grants(['robot1'], [''], viz=False)
    root = ET.fromstring(sec.policy_xml(g))
    assert root.tag == 'policy' and root.get('version') == '0.2.0'
    enclaves = root.findall('enclaves/enclave')
    assert [e.get('path') for e in enclaves] == list(g)
    cam = root.find('enclaves/enclave[@path="/edgent/robot1/camera_node"]/profiles/profile')
    assert (cam.get('ns'), cam.get('node')) == ('/robot1', 'camera_node')
    pub = [t.text for t in cam.findall('topics[@publish="ALLOW"]/topic')]
    assert pub == list(g['/edgent/robot1/camera_node'].publish)
    assert all(t.startswith('/') for t in root.itertext() if t.strip().startswith(('/', 'e')))
    assert cam.find('services[@request="ALLOW"]') is None
