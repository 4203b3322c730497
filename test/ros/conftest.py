"""Skip without ROS 2; otherwise provide the real-node fixtures of test/ros_helpers.py."""

import pytest

pytest.importorskip('rclpy', reason='rclpy not installed (run scripts/setup.sh)')
pytest.importorskip('edgent_ros.msg', reason='edgent_ros messages not built (scripts/setup.sh)')

from ros_helpers import Listener, Procs, domain_id, listener, procs  # noqa: E402,F401
