"""
Where ``edgent-ros`` writes what it makes and finds the data sets it reads, whatever the install.

Outputs never default into the installed package (read-only in a ROS install) or the source
tree: they go under the **user directory** -- ``$EDGENT_ROS_HOME`` if set, else
``$XDG_DATA_HOME/edgent_ros``, else ``~/.local/share/edgent_ros`` -- in ``artifacts/``
(weights, accuracy tables, latency models, configuration maps) and ``results/`` (profiles,
plots, sweep results). Reading keeps the shipped artifacts (``core.artifacts.ARTIFACT_DIR``) as
the default; a path given on the command line wins over both.

Data sets (``cifar10/`` with ``train.tar.gz``/``test.tar.gz``, ``traces/`` with ``t_s,mbps``
CSVs) are looked up in this order: the folder given on the command line; else
``$EDGENT_ROS_DATA/<name>`` (and only there, when the variable is set); else
``<user directory>/data/<name>``, then ``../shared/data/<name>`` beside a source checkout (the
development setup). When none exists, ``DataNotFoundError`` names the option, the variable and
every place looked at. Nothing here creates a folder or imports anything heavy.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Mapping, Optional

HOME_ENV = 'EDGENT_ROS_HOME'
DATA_ENV = 'EDGENT_ROS_DATA'
PACKAGE_DIR = Path(__file__).resolve().parents[1]   # edgent_ros/
DATA_SETS = ('cifar10', 'traces')


class DataNotFoundError(FileNotFoundError):
    """A data set is in none of the places looked at; the message says how to point at it."""


def _env(environ: Optional[Mapping[str, str]]) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def user_dir(environ: Optional[Mapping[str, str]] = None) -> Path:
    """
    Return the user directory (not created).

    ``$EDGENT_ROS_HOME``; else ``$XDG_DATA_HOME/edgent_ros`` (an absolute ``XDG_DATA_HOME``
    only, as the XDG base directory specification asks); else ``~/.local/share/edgent_ros``.
    """
    env = _env(environ)
    home = env.get(HOME_ENV)
    if home:
        return Path(home).expanduser()
    xdg = env.get('XDG_DATA_HOME')
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / 'edgent_ros'
    return Path.home() / '.local' / 'share' / 'edgent_ros'


def artifacts_out(name: str = '', environ: Optional[Mapping[str, str]] = None) -> Path:
    """Return ``<user dir>/artifacts/<name>``: default output of weights, tables, models, maps."""
    return user_dir(environ) / 'artifacts' / name


def results_out(name: str = '', environ: Optional[Mapping[str, str]] = None) -> Path:
    """Return ``<user dir>/results/<name>``: default output of profiles, plots, sweep results."""
    return user_dir(environ) / 'results' / name


def checkout_data_dir() -> Optional[Path]:
    """Return ``../shared/data`` beside the source checkout this module runs from, or None."""
    root = PACKAGE_DIR.parent
    if not (root / 'package.xml').is_file():   # an installed package, not a checkout
        return None
    return root.parent / 'shared' / 'data'


def data_candidates(name: str, environ: Optional[Mapping[str, str]] = None) -> List[Path]:
    """Return the folders looked at for data set ``name`` (``cifar10``, ``traces``), in order."""
    if name not in DATA_SETS:
        raise ValueError(f'data set must be one of {DATA_SETS}, got {name!r}')
    env = _env(environ)
    if env.get(DATA_ENV):
        return [Path(env[DATA_ENV]).expanduser() / name]
    out = [user_dir(env) / 'data' / name]
    checkout = checkout_data_dir()
    if checkout is not None:
        out.append(checkout / name)
    return out


def find_data(name: str, given: Optional[Path] = None, option: str = '--data-dir',
              environ: Optional[Mapping[str, str]] = None) -> Path:
    """
    Return the folder of data set ``name``: ``given``, else the first candidate that exists.

    ``option`` is the command-line option that sets ``given`` (named in the error). Raises
    ``DataNotFoundError`` naming the option, ``$EDGENT_ROS_DATA`` and the folders looked at.
    """
    if given is not None:
        path = Path(given).expanduser()
        if not path.is_dir():
            raise DataNotFoundError(f'{name} data: {path} (from {option}) is not a folder')
        return path
    cands = data_candidates(name, environ)
    for c in cands:
        if c.is_dir():
            return c
    raise DataNotFoundError(
        f'{name} data not found (looked in {", ".join(str(c) for c in cands)}); pass '
        f'{option} DIR, or set {DATA_ENV} to a folder holding {name}/, or put it in '
        f'{user_dir(environ) / "data" / name}')
