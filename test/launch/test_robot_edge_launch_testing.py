"""
launch_testing: robot.launch.py + edge.launch.py in one launch, checked while running and after.

Waits for the nodes and the tensor/outcome topics, reads parameters through the real parameter
services, waits for outcomes to flow, then checks every process shut down cleanly.
"""

import os
import time
import unittest

from ament_index_python.packages import get_package_share_directory
import launch
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
import launch_testing
import launch_testing.actions
import launch_testing.asserts
import pytest
import rclpy
from rclpy.parameter_client import AsyncParameterClient

from edgent_ros.nodes import qos
from edgent_ros.msg import InferenceResult

NS = 'lt_robot'


@pytest.mark.launch_test
def generate_test_description():
    """Include the package's robot and edge launch files, namespaced."""
    share = os.path.join(get_package_share_directory('edgent_ros'), 'launch')
    robot = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(share, 'robot.launch.py')),
        launch_arguments={'namespace': NS, 'deadline_ms': '75.0', 'viz': 'false'}.items())
    edge = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(share, 'edge.launch.py')),
        launch_arguments={'robot_namespaces': NS}.items())
    return launch.LaunchDescription([edge, robot, launch_testing.actions.ReadyToTest()]), {}


class TestRunning(unittest.TestCase):
    """Checks while the launch is up."""

    @classmethod
    def setUpClass(cls):
        cls.context = rclpy.context.Context()
        rclpy.init(context=cls.context)
        cls.node = rclpy.create_node('launch_test_probe', context=cls.context)
        cls.executor = rclpy.executors.SingleThreadedExecutor(context=cls.context)
        cls.executor.add_node(cls.node)

    @classmethod
    def tearDownClass(cls):
        cls.executor.shutdown()
        cls.node.destroy_node()
        cls.context.try_shutdown()

    def _spin_until(self, pred, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end and not pred():
            self.executor.spin_once(timeout_sec=0.1)
        return pred()

    def test_nodes_topics_parameters_and_outcomes(self):
        def nodes():
            return {(ns, n) for n, ns in self.node.get_node_names_and_namespaces()}
        want = {(f'/{NS}', 'camera_node'), (f'/{NS}', 'planner_node'), ('/', 'edge_node')}
        self.assertTrue(self._spin_until(lambda: want <= nodes(), 60.0), nodes())
        topics = lambda: {t for t, _ in self.node.get_topic_names_and_types()}  # noqa: E731
        self.assertTrue(self._spin_until(
            lambda: {f'/{NS}/edgent/tensor', f'/{NS}/edgent/outcome'} <= topics(), 30.0))
        client = AsyncParameterClient(self.node, f'/{NS}/planner_node')
        self.assertTrue(self._spin_until(client.services_are_ready, 30.0))
        fut = client.get_parameters(['deadline_ms', 'policy'])
        self.assertTrue(self._spin_until(fut.done, 10.0))
        values = fut.result().values
        self.assertEqual(values[0].double_value, 75.0)
        self.assertEqual(values[1].string_value, 'edgent')
        outcomes = []
        self.node.create_subscription(InferenceResult, f'/{NS}/edgent/outcome', outcomes.append,
                                      qos.RESULT)
        self.assertTrue(self._spin_until(lambda: len(outcomes) >= 5, 30.0))


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    """After the launch is stopped."""

    def test_clean_exit(self, proc_info):
        """Every node exits cleanly on SIGINT."""
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0, -2])
