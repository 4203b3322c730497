"""
Signals that arrive while a node process is still starting (no rclpy, no imports of ours).

A node process spends its first seconds importing torch and rclpy and loading artifacts. A
SIGINT that arrives then (``ros2 launch`` stopping early, a test tearing down) was lost: an
import swallowed the ``KeyboardInterrupt``, the node came up and spun for ever, and ``launch``
had to SIGKILL it. So ``entry`` installs this recording handler before importing anything heavy,
and it stays the only handler: ``node_util.run`` starts rclpy without its signal handlers, exits
quietly when a signal came during start-up, and otherwise leaves its spin loop at the next step
after one, with the context still up so the node can finish in-flight work (``before_shutdown``).

A process still alive ``HANG_DUMP_S`` seconds after its first signal writes every thread's
stack to stderr (``faulthandler``) and goes on: ``launch`` escalates to SIGTERM at 5 s and to
SIGKILL after that, and a kill leaves no trace of where the shutdown hung. Environment
``EDGENT_HANG_DUMP_S`` sets the delay (0: never).
"""

import faulthandler
import os
import signal
import sys
from typing import List, Optional

_received: List[int] = []
HANG_DUMP_ENV = 'EDGENT_HANG_DUMP_S'
HANG_DUMP_S = 4.5     # before launch's SIGTERM (its sigterm_timeout, 5 s)


def hang_dump_s() -> float:
    """Return the seconds after a first signal at which the stacks are dumped (0: never)."""
    try:
        value = float(os.environ.get(HANG_DUMP_ENV, HANG_DUMP_S))
    except ValueError:
        return HANG_DUMP_S
    return value if value > 0 and value == value else 0.0


def _record(signum, frame) -> None:   # noqa: ARG001 (signal handler signature)
    if not _received:
        delay = hang_dump_s()
        if delay > 0:
            try:
                faulthandler.dump_traceback_later(delay, repeat=False, file=sys.stderr)
            except (ValueError, RuntimeError, OSError):   # no usable stderr: no dump
                pass
    _received.append(signum)


def install() -> None:
    """Record SIGINT/SIGTERM instead of acting on them (``node_util.run`` checks ``signalled``)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _record)


def signalled() -> Optional[int]:
    """Return the first signal recorded since ``install`` (None if none)."""
    return _received[0] if _received else None
