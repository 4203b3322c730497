"""
DDS Security for real (issue 20 item 3): SROS2 keystore, ``ROS_SECURITY_STRATEGY=Enforce``.

camera_node, edge_node and an observer run as processes, each in its own enclave, on the Fast
DDS built with security (third_party/secure_fastdds). An unenrolled participant (this test
process, on the PyPI Fast DDS) then tries what an intruder on the domain would:

- read ``edgent/tensor`` (the robot's camera data);
- find the camera's parameter service and set ``exit_index``;
- publish tensors on ``edgent/tensor`` and have the edge answer them.

Secured, all three fail while the nodes work as before (the observer counts the camera's
outcomes and reads ``exit_index`` unchanged). The same scenario without security is the
control: there the same intruder does all three, so the checks can fail.

Least privilege: with the fleet's grants (``edgent-ros keystore``) the planner still steers the
camera, while *enrolled* participants with the wrong node's key -- the robot's viz_node, another
robot's camera_node -- try the same three things (``secure_insider.py``) and DDS access control
refuses each. The control is the same keystore with sros2's default permissions, where the
same insiders succeed. The secured tests are skipped only when the secure build is not
installed (``./scripts/setup.sh`` unpacks it).
"""

import contextlib
import json
import os
from pathlib import Path
import select
import signal
import subprocess
import sys
import time

import pytest
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient

from edgent_ros.core import security
from edgent_ros.core.inference import CoInference
from edgent_ros.core.weights import load_model
from edgent_ros.msg import Tensor
from edgent_ros.nodes import qos
from edgent_ros.nodes.keystore import create_fleet_keystore
from secure_insider import intruder_tensor

SECURE_WHY = security.secure_build_missing(security.secure_lib_dir())
OBSERVER = Path(__file__).with_name('secure_observer.py')
INSIDER = Path(__file__).with_name('secure_insider.py')
OBSERVE_S = 20.0
INTRUDER_FROM = 900_000
CAMERA, EDGE, WATCH = '/edgent/camera_node', '/edgent/edge_node', '/edgent/test/observer'


@pytest.fixture(scope='module')
def runner():
    return CoInference(load_model())


def _read_json_line(proc, timeout):
    """Return the next JSON line of ``proc``'s stdout within ``timeout`` s, else None."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            line = proc.stdout.readline()
            if not line:
                return None
            if line.startswith('{'):
                return json.loads(line)
    return None


@contextlib.contextmanager
def _observer(tmp_path, env, duration_s):
    """Run ``secure_observer.py`` in ``env`` until it is ready; stop it (SIGINT) on the way out."""
    log = open(tmp_path / 'observer.log', 'w')
    obs = subprocess.Popen([sys.executable, str(OBSERVER), str(duration_s), str(INTRUDER_FROM)],
                           stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True,
                           env=dict(os.environ, PYTHONUNBUFFERED='1', **env))
    try:
        assert _read_json_line(obs, 30) == {'ready': True}, (tmp_path / 'observer.log').read_text()
        yield obs
    finally:
        if obs.poll() is None:
            os.killpg(obs.pid, signal.SIGINT)
            obs.wait(10)
        log.close()


def _scenario(procs, listener, runner, tmp_path, env_for):
    """Run the nodes and the observer (``env_for(enclave)`` each), then intrude; report all."""
    procs.start('edge_node', env=env_for(EDGE))
    procs.start('camera_node', env=env_for(CAMERA), exit_index=5, split_index=0, fps=5.0,
                max_in_flight=4, wait_for_edge_s=30.0, result_timeout_s=10.0)
    with _observer(tmp_path, env_for(WATCH), OBSERVE_S) as obs:
        listener.listen(Tensor, 'edgent/tensor', qos.TENSOR)
        pub = listener.node.create_publisher(Tensor, 'edgent/tensor', qos.TENSOR)
        client = AsyncParameterClient(listener.node, 'camera_node')
        found = client.wait_for_services(timeout_sec=8.0)
        set_ok = False
        if found:
            fut = client.set_parameters([Parameter('exit_index', Parameter.Type.INTEGER, 2)])
            listener.spin_until(fut.done, timeout=5.0)
            set_ok = fut.done() and all(r.successful for r in fut.result().results)
        for i in range(20):
            pub.publish(intruder_tensor(runner, i, INTRUDER_FROM))
            listener.spin_until(lambda: False, timeout=0.25)
        report = _read_json_line(obs, OBSERVE_S + 40)
        assert report is not None, (tmp_path / 'observer.log').read_text()
    # the camera's tensors only (the intruder's own come back to it inside its participant)
    theirs = [m for m in listener.msgs('edgent/tensor') if m.sequence < INTRUDER_FROM]
    report.update(tensors_read=len(theirs), service_found=found,
                  set_ok=set_ok)
    return report


def test_without_security_an_intruder_reads_steers_and_injects(procs, listener, runner,
                                                               tmp_path):
    """The control: on an open domain the same intruder succeeds at all three."""
    r = _scenario(procs, listener, runner, tmp_path, lambda enclave: {})
    assert r['outcomes_ok'] > 0, r
    assert r['tensors_read'] > 0, r
    assert r['service_found'] and r['set_ok'], r
    assert r['camera_exit_index'] == 2, r
    assert r['intruder_answers'] > 0, r


@pytest.mark.skipif(SECURE_WHY is not None, reason=f'no secure Fast DDS: {SECURE_WHY}')
def test_enforced_security_nodes_work_and_an_intruder_gets_nothing(procs, listener, runner,
                                                                   tmp_path, domain_id):
    store = tmp_path / 'keystore'
    create_fleet_keystore(store, [CAMERA, EDGE, WATCH], domain_id)
    r = _scenario(procs, listener, runner, tmp_path,
                  lambda enclave: security.node_env(str(store), enclave))
    logs = f'\ncamera:\n{procs.log("camera_node")}\nedge:\n{procs.log("edge_node")}'
    # the nodes work as before: the secured camera's frames are classified by the secured edge
    assert r['outcomes_ok'] >= 10, f'{r}{logs}'
    # ... and the intruder: reads no tensor, finds no parameter service, steers nothing
    assert r['tensors_read'] == 0, r
    assert not r['service_found'] and not r['set_ok'], r
    assert r['camera_exit_index'] == 5, r
    # and none of its 20 well-formed tensors was answered
    assert r['intruder_answers'] == 0, r


@pytest.mark.skipif(SECURE_WHY is not None, reason=f'no secure Fast DDS: {SECURE_WHY}')
def test_a_node_without_its_enclave_does_not_start_unsecured(procs, tmp_path, domain_id):
    store = tmp_path / 'keystore'
    create_fleet_keystore(store, [EDGE], domain_id)
    env = security.node_env(str(store), EDGE)
    env['ROS_SECURITY_ENCLAVE_OVERRIDE'] = '/edgent/robot9/camera_node'   # not in the keystore
    p = procs.start('camera_node', env=env)
    p.wait(60)
    assert p.returncode != 0
    assert '/edgent/robot9/camera_node' in procs.log('camera_node'), procs.log('camera_node')


VIZ, OTHER_CAMERA, PLANNER = ('/edgent/viz_node', '/edgent/robot2/camera_node',
                              '/edgent/planner_node')


def _insiders(procs, tmp_path, store, domain_id, least_privilege):
    """
    Run the robot's nodes and two insiders; return the observer's report and each insider's.

    Camera, edge, planner (steering the camera from exit 1), viz and the observer run while two
    insiders (viz_node's key, robot2's camera_node's key) try what is not their job.
    """
    grants = security.fleet_grants(['', 'robot2'], ['']) if least_privilege else None
    create_fleet_keystore(store, security.fleet_enclaves(['', 'robot2'], ['']) + [WATCH],
                          domain_id, grants)
    env_for = lambda enclave: security.node_env(str(store), enclave)   # noqa: E731
    procs.start('edge_node', env=env_for(EDGE))
    procs.start('camera_node', env=env_for(CAMERA), exit_index=1, split_index=0, fps=5.0,
                max_in_flight=4, wait_for_edge_s=30.0, result_timeout_s=10.0)
    procs.start('planner_node', env=env_for(PLANNER), deadline_ms=1000.0, min_dwell_s=0.0)
    procs.start('viz_node', env=env_for(VIZ))
    insiders = {}
    with _observer(tmp_path, env_for(WATCH), 60) as obs:
        for offset, enclave, node, ns in ((0, VIZ, 'viz_node', '/'),
                                          (1000, OTHER_CAMERA, 'camera_node', '/robot2')):
            name = enclave.strip('/').replace('/', '_')
            with open(tmp_path / f'{name}.log', 'w') as err:
                done = subprocess.run(
                    [sys.executable, str(INSIDER), str(INTRUDER_FROM + offset), node, ns],
                    stdout=subprocess.PIPE, stderr=err, text=True, timeout=90,
                    env=dict(os.environ, PYTHONUNBUFFERED='1', **env_for(enclave)))
            lines = [json.loads(x) for x in done.stdout.splitlines() if x.startswith('{')]
            assert lines, (tmp_path / f'{name}.log').read_text()
            insiders[enclave] = lines[-1]
        report = _read_json_line(obs, 100)
        assert report is not None, (tmp_path / 'observer.log').read_text()
    return report, insiders


@pytest.mark.skipif(SECURE_WHY is not None, reason=f'no secure Fast DDS: {SECURE_WHY}')
def test_default_permissions_let_any_enrolled_key_steer_and_inject(procs, tmp_path, domain_id):
    """The control: with sros2's default permissions any enrolled key does what the camera does."""
    r, ins = _insiders(procs, tmp_path, tmp_path / 'keystore', domain_id,
                       least_privilege=False)
    for enclave, got in ins.items():
        assert got['tensors_read'] > 0 and got['set_ok'] and got['published'] == 20, (enclave,
                                                                                      got)
    assert r['intruder_answers'] > 0, r


@pytest.mark.skipif(SECURE_WHY is not None, reason=f'no secure Fast DDS: {SECURE_WHY}')
def test_least_privilege_each_key_does_its_own_nodes_job_only(procs, tmp_path, domain_id):
    """
    Fleet grants: the nodes work and each key does only its own node's job.

    The planner steers the camera (exit 1 -> its decision); the robot's viz key and another
    robot's camera key can neither read tensors, nor set the camera's parameters, nor publish a
    tensor: each is refused when it is created.
    """
    store = tmp_path / 'keystore'
    r, ins = _insiders(procs, tmp_path, store, domain_id, least_privilege=True)
    logs = (f'\ncamera:\n{procs.log("camera_node")}\nedge:\n{procs.log("edge_node")}'
            f'\nplanner:\n{procs.log("planner_node")}')
    assert r['outcomes_ok'] >= 10, f'{r}{logs}'
    assert r['decisions'] > 0 and r['decided_exit'] != 1, f'{r}{logs}'
    assert r['camera_exit_index'] == r['decided_exit'], f'{r}{logs}'
    for enclave, got in ins.items():      # each refused at creation by access control
        assert 'create' in (got['read_error'] or '') and got['tensors_read'] == 0, (enclave, got)
        assert 'create' in (got['set_error'] or '') and not got['set_ok'], (enclave, got)
        assert 'create' in (got['publish_error'] or '') and got['published'] == 0, (enclave, got)
    assert r['intruder_answers'] == 0, r
    assert procs.procs['viz_node'][0].poll() is None, procs.log('viz_node')  # runs on its grant
    # the policy the keystore signed is beside it, readable by ros2 security create_permission
    assert (store / 'edgent_policy.xml').read_text().count('<enclave ') == 9
