"""
Unit tests write nothing into the real user directory.

``EDGENT_ROS_HOME`` (``core.paths``: where ``edgent-ros`` writes outputs by default) points at
a fresh temporary folder in every unit test, so a command run without an output path writes
there and the test can look.
"""

import pytest


@pytest.fixture(autouse=True)
def edgent_home(tmp_path_factory, monkeypatch):
    """Return the temporary user directory set as ``$EDGENT_ROS_HOME`` for this test."""
    home = tmp_path_factory.mktemp('edgent_home')
    monkeypatch.setenv('EDGENT_ROS_HOME', str(home))
    return home
