"""
A participant run as its own process (secured or not by its environment) for test_security.

It counts camera outcomes, edge answers and planner decisions (the last one's exit) for
``DURATION`` seconds, then reads the camera's ``exit_index`` through the parameter service, and
prints one JSON line. Secured, it must be a
process of its own: the test process has loaded the PyPI Fast DDS, built without security.
Usage: python secure_observer.py DURATION_S INTRUDER_SEQ_FROM
"""

import json
import sys
import time

import rclpy
from rclpy.parameter_client import AsyncParameterClient

from edgent_ros.msg import ExitSplitDecision, InferenceResult
from edgent_ros.nodes import qos


def main() -> int:
    duration, intruder_from = float(sys.argv[1]), int(sys.argv[2])
    rclpy.init()
    node = rclpy.create_node('secure_observer')
    seen = {'outcomes_ok': 0, 'intruder_answers': 0, 'answers': 0, 'decisions': 0,
            'decided_exit': None}

    def on_outcome(m):
        seen['outcomes_ok'] += m.status == InferenceResult.STATUS_OK

    def on_result(m):
        seen['answers'] += 1
        seen['intruder_answers'] += m.sequence >= intruder_from

    def on_decision(m):
        seen['decisions'] += 1
        seen['decided_exit'] = m.exit_index

    node.create_subscription(InferenceResult, 'edgent/outcome', on_outcome, qos.RESULT)
    node.create_subscription(ExitSplitDecision, 'edgent/decision', on_decision, qos.DECISION)
    node.create_subscription(InferenceResult, 'edgent/result', on_result, qos.EDGE_RESULT)
    print(json.dumps({'ready': True}), flush=True)
    end = time.monotonic() + duration
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.1)
    client = AsyncParameterClient(node, 'camera_node')
    exit_index = None
    if client.wait_for_services(timeout_sec=10.0):
        fut = client.get_parameters(['exit_index'])
        rclpy.spin_until_future_complete(node, fut, timeout_sec=10.0)
        if fut.done() and fut.result() is not None:
            exit_index = fut.result().values[0].integer_value
    seen['camera_exit_index'] = exit_index
    print(json.dumps(seen), flush=True)
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
