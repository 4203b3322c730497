"""
An enrolled participant that tries what is not its node's job, for test_security.

Run in some enclave (``ROS_SECURITY_ENCLAVE_OVERRIDE``, secured by its environment) as the node
that key belongs to (NODE in NAMESPACE: under least privilege no other node could even start,
its parameter services being someone else's), aimed at the robot in the root namespace: it
tries to read ``/edgent/tensor``, to set ``/camera_node`` to exit 1, split 0
and to publish well-formed tensors (sequence >= SEQ_FROM), then prints one JSON line saying
what each attempt did. Under least privilege DDS Security refuses the reader, the parameter
client and the writer at creation (rclpy raises), which is reported as the error text.
Usage: python secure_insider.py SEQ_FROM NODE NAMESPACE
"""

import json
import sys
import time

import rclpy
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient

from edgent_ros.core.codec import encode, fill_message
from edgent_ros.core.datasets import load_sample
from edgent_ros.core.inference import CoInference
from edgent_ros.core.weights import load_model
from edgent_ros.msg import Tensor
from edgent_ros.nodes import qos


def intruder_tensor(runner, i: int, seq_from: int) -> Tensor:
    """Return a well-formed split-0 frame as a camera sends it, sequence ``seq_from + i``."""
    m = Tensor()
    m.header.frame_id = 'camera_optical_frame'
    m.robot = '/'
    m.sequence = seq_from + i
    m.model_id = runner.model_id
    m.exit_index, m.split_index = 5, 0
    fill_message(m, encode(runner.device_step(load_sample()[0][i % 200], 5, 0).tensor))
    return m


def _spin(node, seconds: float, until=lambda: False) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end and not until():
        rclpy.spin_once(node, timeout_sec=0.1)


def main() -> int:
    seq_from, name, namespace = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    runner = CoInference(load_model())
    tensors = [intruder_tensor(runner, i, seq_from) for i in range(20)]
    rclpy.init()
    node = rclpy.create_node(name, namespace=namespace)
    report = {'read_error': None, 'tensors_read': 0, 'set_error': None, 'set_ok': False,
              'publish_error': None, 'published': 0}
    got = []
    try:
        node.create_subscription(Tensor, '/edgent/tensor',
                                 lambda m: got.append(m.sequence), qos.TENSOR)
    except Exception as exc:           # noqa: B902 - refused by access control: report it
        report['read_error'] = f'{type(exc).__name__}: {exc}'
    try:
        client = AsyncParameterClient(node, '/camera_node')
        if client.wait_for_services(timeout_sec=8.0):
            fut = client.set_parameters_atomically([
                Parameter('exit_index', Parameter.Type.INTEGER, 1),
                Parameter('split_index', Parameter.Type.INTEGER, 0)])
            _spin(node, 5.0, fut.done)
            res = fut.result() if fut.done() else None
            report['set_ok'] = bool(res is not None and res.result.successful)
            if not report['set_ok']:
                report['set_error'] = 'no answer in 5 s' if res is None else res.result.reason
        else:
            report['set_error'] = 'no parameter service found in 8 s'
    except Exception as exc:           # noqa: B902
        report['set_error'] = f'{type(exc).__name__}: {exc}'
    try:
        pub = node.create_publisher(Tensor, '/edgent/tensor', qos.TENSOR)
        _spin(node, 2.0)
        for m in tensors:
            pub.publish(m)
            report['published'] += 1
            _spin(node, 0.25)
    except Exception as exc:           # noqa: B902
        report['publish_error'] = f'{type(exc).__name__}: {exc}'
    _spin(node, 2.0)
    report['tensors_read'] = len([s for s in got if s < seq_from])
    print(json.dumps(report), flush=True)
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
