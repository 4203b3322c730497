"""
A model of your own across processes (issue 16, items 4 and 8).

camera_node and edge_node load a described model (``model`` parameter: a residual network at
64x64 with side exits whose heads ``train-exits`` trained briefly here) and finish frames at
several (exit, split) pairs, each result equal to an in-process forward of the same frame;
nodes of different models refuse to work together and say so; ``source: topic`` takes a 640x480
``bgr8`` camera stream and resizes it to the model's input.
"""

import os
from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest
from rclpy.parameter_client import AsyncParameterClient

from edgent_ros.core.datasets import load_sample
from edgent_ros.core.described import load_described
from edgent_ros.core.inference import CoInference, preprocess_image
from edgent_ros.msg import InferenceResult, Tensor
from edgent_ros.nodes import qos
from edgent_ros.offline.exit_training import ExitTrainConfig, train_exits
from edgent_ros.offline.model_tools import describe_factory, import_model
from ros_helpers import get_parameters

N = 8
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope='module')
def described(tmp_path_factory):
    """Describe resnet_cifar64 (seeded random backbone), train two heads on the sample."""
    folder = tmp_path_factory.mktemp('model')
    desc = describe_factory('edgent_ros.models.resnet_cifar:resnet_cifar64', 'r64',
                            (3, 64, 64), 10, folder / 'r64.yaml', exits=['layer1', 'layer2'])
    x, y = load_sample()
    train_exits(desc.path, x, y, x[:64], y[:64], ExitTrainConfig(epochs=1, batch_size=64),
                'sample', log=lambda s: None)
    import_model(desc.path, log=lambda s: None)
    dm = load_described(desc.path)
    return Path(desc.path), CoInference(dm), x, y


def _frame(runner, image):
    return preprocess_image(image, size=runner.input_shape[1:])


@pytest.mark.parametrize('exit_index,split_index', [(3, 0), (3, 6), (1, 3), (2, 'end')])
def test_described_model_frames_cross_processes(procs, listener, described, exit_index,
                                                split_index):
    path, runner, x, y = described
    n = runner.branch_len(exit_index)
    split_index = n if split_index == 'end' else split_index
    listener.listen(InferenceResult, 'edgent/outcome', qos.RESULT)
    listener.listen(Tensor, 'edgent/tensor', qos.TENSOR)
    procs.start('edge_node', model=str(path))
    cam = procs.start('camera_node', model=str(path), exit_index=exit_index,
                      split_index=split_index, max_frames=N, fps=10.0, exit_when_done=True,
                      loop=False, max_in_flight=N, wait_for_subscribers=1, wait_for_edge_s=30.0,
                      result_timeout_s=20.0)
    ok = listener.spin_until(lambda: len(listener.msgs('edgent/outcome')) >= N, timeout=90)
    outcomes = listener.msgs('edgent/outcome')
    assert ok, f'{len(outcomes)}/{N}\n{procs.log("camera_node")}\n{procs.log("edge_node")}'
    cam.wait(20)
    assert sorted(o.sequence for o in outcomes) == list(range(1, N + 1))
    for o in outcomes:
        i = o.sequence - 1
        assert o.status == InferenceResult.STATUS_OK, (o.status, o.drop_reason)
        assert (o.exit_index, o.split_index) == (exit_index, split_index)
        assert o.model_id == runner.model_id
        assert o.class_id == runner.full_forward(_frame(runner, x[i]), exit_index).class_id
    sent = [t for t in listener.msgs('edgent/tensor') if not t.probe]
    if split_index < n:
        want = [1, 64, 64, 3] if split_index == 0 else \
            [1] + list(runner.cut_shape(exit_index, split_index))
        assert sent and all(list(t.shape) == want for t in sent)
    else:
        assert not sent


def test_an_edge_of_another_model_refuses_the_frames(procs, listener, described):
    path, runner, _, _ = described
    listener.listen(InferenceResult, 'edgent/outcome', qos.RESULT)
    procs.start('edge_node')                                   # the shipped AlexNet
    procs.start('camera_node', model=str(path), exit_index=3, split_index=2, fps=10.0,
                max_frames=4, wait_for_edge_s=30.0, wait_for_subscribers=1)
    assert listener.spin_until(lambda: len(listener.msgs('edgent/outcome')) >= 4, 60.0), \
        procs.log('camera_node')
    for o in listener.msgs('edgent/outcome'):
        assert o.status != InferenceResult.STATUS_OK
        assert 'model_id' in o.drop_reason
    assert runner.model_id in procs.log('edge_node')


def test_a_planner_of_another_model_is_refused_by_the_camera(procs, listener, described):
    path, runner, _, _ = described
    procs.start('camera_node', model=str(path), exit_index=3, split_index=0, fps=2.0)
    procs.start('planner_node', deadline_ms=100.0, policy='device-only')   # AlexNet's planner
    client = AsyncParameterClient(listener.node, 'camera_node')
    assert listener.spin_until(client.services_are_ready, 30.0)
    assert listener.spin_until(lambda: 'the planner plans model' in procs.log('planner_node'),
                               30.0), procs.log('planner_node')
    values = get_parameters(listener, client, ['exit_index', 'split_index', 'model_id'])
    assert (values[0].integer_value, values[1].integer_value) == (3, 0)   # nothing applied
    assert values[2].string_value == runner.model_id


PUBLISHER = """
import sys, time
import numpy as np
import rclpy
from sensor_msgs.msg import Image
from edgent_ros.nodes import qos
images = np.load(sys.argv[1])
rclpy.init()
node = rclpy.create_node('test_camera_driver')
pub = node.create_publisher(Image, 'image_raw', qos.IMAGE)
end = time.monotonic() + float(sys.argv[2])
k = 0
while time.monotonic() < end:
    i = k % len(images)
    h, w = images[i].shape[:2]
    msg = Image(height=h, width=w, encoding='bgr8', is_bigendian=0, step=w * 3,
                data=images[i].tobytes())
    msg.header.frame_id = 'front_camera_optical'
    msg.header.stamp.sec = i + 1
    pub.publish(msg)
    k += 1
    rclpy.spin_once(node, timeout_sec=0.4)
"""


def test_topic_source_at_640x480_is_resized_to_the_model_input(procs, listener, described,
                                                               tmp_path):
    """
    A camera driver in its own process streams 640x480 bgr8 images (sensor-data QoS).

    Both processes use config/fastdds_local.xml (a shared-memory segment that holds a 900 KB
    image; with the default 512 KiB one most images of a best-effort stream are lost between
    two processes on one host: README, "Large messages on one host"). The profile is read once
    per process, so the driver is a child process started with it.
    """
    path, runner, x, _ = described
    profile = {'FASTDDS_DEFAULT_PROFILES_FILE': str(ROOT / 'config' / 'fastdds_local.xml')}
    listener.listen(InferenceResult, 'edgent/outcome', qos.RESULT)
    old = {k: os.environ.get(k) for k in profile}
    os.environ.update(profile)           # the node processes start with the profile
    try:
        procs.start('edge_node', model=str(path))
        procs.start('camera_node', model=str(path), source='topic', exit_index=3,
                    split_index=6, max_in_flight=4, result_timeout_s=20.0)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    big = [np.ascontiguousarray(np.kron(x[i], np.ones((15, 20, 1), np.uint8))[:, :, ::-1])
           for i in range(3)]                                  # 480x640 BGR
    assert big[0].shape == (480, 640, 3)
    np.save(tmp_path / 'images.npy', np.stack(big))
    driver = subprocess.Popen([sys.executable, '-c', PUBLISHER, str(tmp_path / 'images.npy'),
                               '60'], env=dict(os.environ, **profile),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def stamps():
        return {o.header.stamp.sec for o in listener.msgs('edgent/outcome')
                if o.status == InferenceResult.STATUS_OK}
    try:
        ok = listener.spin_until(lambda: stamps() == {1, 2, 3}, 60.0)
    finally:
        driver.kill()
        out = driver.communicate()[0].decode(errors='replace')
    assert ok, f'{stamps()}\n{procs.log("camera_node")}\n{out}'
    by_stamp = {o.header.stamp.sec: o for o in listener.msgs('edgent/outcome')
                if o.status == InferenceResult.STATUS_OK}
    for i, img in enumerate(big):
        o = by_stamp[i + 1]
        assert o.status == InferenceResult.STATUS_OK, o.drop_reason
        assert o.header.frame_id == 'front_camera_optical'
        frame = preprocess_image(img, rgb=False, size=(64, 64))
        assert o.class_id == runner.full_forward(frame, 3).class_id
