"""
``edgent-ros``: the command line of the offline phase and the tools around the nodes.

Every subcommand is registered here from its module (``cli.offline``, ``cli.ros``,
``cli.evaluation``). Handlers import torch (and rclpy) only when they run, so ``--help``, ``plan``
and ``info`` load neither torch nor rclpy, and the offline phase runs on a machine without ROS.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from . import evaluation, offline, ros
from .. import __version__
from ..core.paths import DATA_ENV, HOME_ENV

EPILOG = (f'Outputs (weights, tables, latency models, maps, profiles, plots, sweep results) go '
          f'under the user directory ${HOME_ENV}, else $XDG_DATA_HOME/edgent_ros, else '
          '~/.local/share/edgent_ros (artifacts/, results/) unless a path is given; reading '
          'defaults to the shipped artifacts. Data sets (cifar10/, traces/) come from the '
          f'option naming them, else ${DATA_ENV}/<name> when that is set, otherwise '
          '<user dir>/data/<name>, then ../shared/data/<name> beside a source checkout.')


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``edgent-ros``."""
    p = argparse.ArgumentParser(
        prog='edgent-ros',
        description='Edgent device-edge co-inference: offline phase, planning and the tools '
                    'around the nodes.', epilog=EPILOG)
    p.add_argument('--version', action='version', version=f'%(prog)s {__version__}',
                   help='print the package version and exit')
    sub = p.add_subparsers(dest='cmd', required=True, metavar='COMMAND',
                           help='one of the subcommands below; `edgent-ros COMMAND -h` for its '
                                'options')
    offline.add_parsers(sub)
    ros.add_parsers(sub)
    evaluation.add_parsers(sub)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``edgent-ros`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f'edgent-ros {args.cmd}: error: {exc}', file=sys.stderr)
        return 2
    except BrokenPipeError:   # output piped into `head` and closed
        sys.stderr.close()
        return 0


if __name__ == '__main__':
    sys.exit(main())
