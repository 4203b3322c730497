"""``python -m edgent_ros.cli``: the ``edgent-ros`` command line."""
import sys

from .main import main

sys.exit(main())
