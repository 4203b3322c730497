"""
Put the repository root first on ``sys.path`` so ``pytest`` works without ``PYTHONPATH``.

In a sourced ROS environment the ament install of ``edgent_ros`` (with the generated
``edgent_ros.msg``) is on ``sys.path`` too. ``edgent_ros/__init__.py`` uses
``pkgutil.extend_path``, so with the working tree first its modules are the ones under test and
``edgent_ros.msg`` is still found in the install; with the install first, stale installed copies
of ``model.py`` and friends would shadow the working tree.
"""

from pathlib import Path
import sys

ROOT = Path(__file__).resolve().parents[1]

while str(ROOT) in sys.path:
    sys.path.remove(str(ROOT))
sys.path.insert(0, str(ROOT))


def pytest_report_header(config):
    """Say which copy of edgent_ros the tests import."""
    import edgent_ros
    return f'edgent_ros from: {", ".join(edgent_ros.__path__)}'
