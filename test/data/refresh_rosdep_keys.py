#!/usr/bin/env python3
"""
Rewrite test/data/rosdep_keys.yaml from a checkout of ros/rosdistro.

The snapshot holds, for every ``<*depend>`` key in package.xml (plus ``--extra`` keys), either
the ROS repository that releases it in each distribution of ``DISTROS`` (a ROS package name),
or its entry in rosdep/base.yaml or rosdep/python.yaml (a rosdep key), copied unchanged.
A key found in neither is an error: fix package.xml first. For the Python modules imported
without a key (``NO_KEY``) it records that none of the likely key names exists; if one appears,
the script fails so that package.xml can use it.

    git clone --depth 1 https://github.com/ros/rosdistro /tmp/rosdistro
    python test/data/refresh_rosdep_keys.py /tmp/rosdistro
"""

import argparse
from pathlib import Path
import subprocess
import sys
import xml.etree.ElementTree as ET

import yaml

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent / 'rosdep_keys.yaml'
DISTROS = ('jazzy', 'kilted')
ROSDEP_FILES = ('rosdep/base.yaml', 'rosdep/python.yaml')
# imported module -> key names checked absent (installed from requirements/ros-distro.txt)
NO_KEY = {'safetensors': ['python3-safetensors', 'python3-safetensors-pip', 'safetensors']}
DEPEND_TAGS = ('depend', 'build_depend', 'buildtool_depend', 'build_export_depend',
               'exec_depend', 'test_depend', 'doc_depend')


def package_keys(package_xml: Path):
    """Return the sorted set of keys in package.xml's ``<*depend>`` tags."""
    root = ET.parse(package_xml).getroot()
    return sorted({e.text.strip() for tag in DEPEND_TAGS for e in root.findall(tag)})


def git_show(rosdistro: Path, path: str) -> str:
    """Return the text of ``path`` at the checkout's HEAD."""
    return subprocess.run(['git', '-C', str(rosdistro), 'show', f'HEAD:{path}'],
                          check=True, capture_output=True, text=True).stdout


def released_packages(distribution: dict):
    """Map package name -> repository name for one distribution.yaml."""
    out = {}
    for repo, info in distribution.get('repositories', {}).items():
        release = info.get('release')
        if release:
            for pkg in release.get('packages', [repo]):
                out[pkg] = repo
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument('rosdistro', type=Path, help='a git checkout of ros/rosdistro')
    parser.add_argument('--extra', nargs='*', default=[], help='keys beyond package.xml')
    args = parser.parse_args(argv)
    commit, date = subprocess.run(
        ['git', '-C', str(args.rosdistro), 'log', '-1', '--format=%H %cs'],
        check=True, capture_output=True, text=True).stdout.split()
    released = {d: released_packages(yaml.safe_load(git_show(args.rosdistro,
                                                             f'{d}/distribution.yaml')))
                for d in DISTROS}
    rules = {f: yaml.safe_load(git_show(args.rosdistro, f)) for f in ROSDEP_FILES}
    keys = sorted(set(package_keys(ROOT / 'package.xml')) | set(args.extra))
    ros_packages, rosdep, missing = {}, {}, []
    for key in keys:
        repos = {d: released[d][key] for d in DISTROS if key in released[d]}
        if repos:
            ros_packages[key] = repos
            continue
        found = [f for f in ROSDEP_FILES if key in rules[f]]
        if found:
            rosdep[key] = {'file': found[0], 'rules': rules[found[0]][key]}
        else:
            missing.append(key)
    if missing:
        print(f'not a ROS package in {DISTROS} nor a rosdep key: {missing}', file=sys.stderr)
        return 1
    known = set().union(*rules.values(), *released.values())
    appeared = sorted(k for names in NO_KEY.values() for k in names if k in known)
    if appeared:
        print(f'these keys exist now, use them in package.xml: {appeared}', file=sys.stderr)
        return 1
    header = (
        '# Snapshot of ros/rosdistro for the keys package.xml uses (generated; do not edit).\n'
        f'# Source: github.com/ros/rosdistro at commit {commit} ({date}):\n'
        f'#   ros_packages: release repository per distribution '
        f'({{{",".join(DISTROS)}}}/distribution.yaml)\n'
        f'#   rosdep: the entries of {" and ".join(ROSDEP_FILES)}, unchanged\n'
        '#   no_key: imported modules whose likely key names are in none of those files\n'
        '# Refresh: git clone --depth 1 https://github.com/ros/rosdistro /tmp/rosdistro\n'
        '#          python test/data/refresh_rosdep_keys.py /tmp/rosdistro\n')
    body = {'source': {'repository': 'ros/rosdistro', 'commit': commit, 'date': date,
                       'distributions': list(DISTROS)},
            'ros_packages': ros_packages, 'rosdep': rosdep, 'no_key': NO_KEY}
    OUT.write_text(header + yaml.safe_dump(body, sort_keys=True, default_flow_style=None,
                                           width=99))
    print(f'{OUT}: {len(ros_packages)} ROS packages, {len(rosdep)} rosdep keys')
    return 0


if __name__ == '__main__':
    sys.exit(main())
