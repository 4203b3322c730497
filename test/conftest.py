"""
Shared pytest setup: import path and torch threads.

The repository root goes first on ``sys.path`` so ``pytest`` works without ``PYTHONPATH``. In a
sourced ROS environment the ament install of ``edgent_ros`` (with the generated
``edgent_ros.msg``) is on ``sys.path`` too. ``edgent_ros/__init__.py`` uses
``pkgutil.extend_path``, so with the working tree first its modules are the ones under test and
``edgent_ros.msg`` is still found in the install; with the install first, stale installed copies
of ``core/model.py`` and friends would shadow the working tree.

Tests run torch with one intra-op thread (``EDGENT_TEST_THREADS`` to change): on a small machine
that is busy with something else (a training job), two spinning OpenMP threads make a tiny
forward pass 40x slower.
"""

import os
from pathlib import Path
import sys

import pytest

ROOT = Path(__file__).resolve().parents[1]

while str(ROOT) in sys.path:
    sys.path.remove(str(ROOT))
sys.path.insert(0, str(ROOT))


def pytest_report_header(config):
    """Say which copy of edgent_ros the tests import."""
    import edgent_ros
    return f'edgent_ros from: {", ".join(edgent_ros.__path__)}'


@pytest.fixture(autouse=True)
def _torch_threads():
    """Run each test with few torch threads (only when the test imported torch)."""
    torch = sys.modules.get('torch')
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get('EDGENT_TEST_THREADS', '1')))
    yield
    torch.set_num_threads(before)
