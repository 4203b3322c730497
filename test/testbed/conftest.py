"""Fixtures shared by the testbed tests."""

import pytest


@pytest.fixture
def installed_nodes():
    """Skip unless rclpy imports and the nodes are built (scripts/setup.sh does both)."""
    pytest.importorskip('rclpy', reason='rclpy not installed (run scripts/setup.sh)')
    from edgent_ros.evaluation.testbed_session import executable
    try:
        executable('camera_node')
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
