"""
package.xml declares every dependency the code needs, with keys rosdep can resolve.

Each ``<*depend>`` key must be a ROS package released in Jazzy and Kilted or a rosdep key of
ros/rosdistro with an Ubuntu rule, as recorded in ``test/data/rosdep_keys.yaml`` (a snapshot:
``test/data/refresh_rosdep_keys.py`` rewrites it). Every third-party module imported by the
package and its launch files must map to a run-time key, every one imported by the tests to a
key of any kind; a module without a key must be in ``requirements/ros-distro.txt``. So a new
import without a key fails here. No ROS import needed.
"""

import ast
from pathlib import Path
import re
import sys
import xml.etree.ElementTree as ET

import pytest

yaml = pytest.importorskip('yaml')

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = ROOT / 'test' / 'data' / 'rosdep_keys.yaml'
RUNTIME_TAGS = ('depend', 'exec_depend')
BUILD_TAGS = ('depend', 'build_depend', 'buildtool_depend', 'test_depend')
ALL_TAGS = ('depend', 'build_depend', 'buildtool_depend', 'build_export_depend',
            'exec_depend', 'test_depend', 'doc_depend')
# imported top-level module -> rosdep key (None: no key, see requirements/ros-distro.txt).
# A ROS package imported under its own name (rclpy, sensor_msgs, launch, ...) needs no entry.
IMPORT_KEYS = {
    'cv2': 'python3-opencv',
    'sros2': 'sros2',
    'matplotlib': 'python3-matplotlib',
    'numpy': 'python3-numpy',
    'pytest': 'python3-pytest',
    'rosbags': 'python3-rosbags-pip',
    'safetensors': None,
    'scipy': 'python3-scipy',
    'sklearn': 'python3-sklearn',
    'torch': 'python3-torch',
    'tqdm': 'python3-tqdm',
    'yaml': 'python3-yaml',
}
# folders whose imports are run-time dependencies, and those needing a test dependency only
RUNTIME_DIRS = ('edgent_ros', 'launch')
TEST_DIRS = ('test',)


def snapshot() -> dict:
    """Return the committed rosdistro snapshot."""
    return yaml.safe_load(SNAPSHOT.read_text())


def depends(package_xml: Path, tags=ALL_TAGS) -> dict:
    """Map each key in the given ``<*depend>`` tags of ``package_xml`` to its tag names."""
    out = {}
    for tag in tags:
        for e in ET.parse(package_xml).getroot().findall(tag):
            out.setdefault(e.text.strip(), []).append(tag)
    return out


def resolves_on_ubuntu(rules: dict) -> bool:
    """Whether a rosdep entry installs something on Ubuntu 24.04 (noble, Jazzy and Kilted)."""
    rule = rules.get('ubuntu')
    if isinstance(rule, dict) and not {'pip', 'apt', 'packages'} & set(rule):
        rule = rule.get('noble', rule.get('*'))   # per-release entries
    return bool(rule)


def unknown_keys(keys, snap: dict) -> list:
    """Return the keys that are neither a released ROS package nor an Ubuntu rosdep key."""
    distros = snap['source']['distributions']
    bad = []
    for key in keys:
        repos = snap['ros_packages'].get(key, {})
        entry = snap['rosdep'].get(key)
        if all(d in repos for d in distros):
            continue
        if entry is None or not resolves_on_ubuntu(entry['rules']):
            bad.append(key)
    return bad


def local_modules(folder: Path) -> set:
    """Return names importable from inside ``folder`` itself: its modules and packages."""
    # a folder without __init__.py (test/launch) is not a package: `import launch` is ROS's
    return {p.stem for p in folder.rglob('*.py')} | {p.parent.name
                                                     for p in folder.rglob('__init__.py')}


def third_party_imports(folder: Path) -> dict:
    """Map each third-party top-level module imported under ``folder`` to one importing file."""
    skip = set(sys.stdlib_module_names) | local_modules(folder) | {'edgent_ros'}
    found = {}
    for path in sorted(folder.rglob('*.py')):
        if '__pycache__' in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split('.')[0]
                if top not in skip:
                    found.setdefault(top, str(path.relative_to(folder.parent)))
    return found


def undeclared_imports(imports: dict, declared: dict, snap: dict, requirements: str) -> list:
    """Return a problem line for each import without a declared key (or requirements line)."""
    problems = []
    for module, where in sorted(imports.items()):
        if module in IMPORT_KEYS:
            key = IMPORT_KEYS[module]
        elif module in snap['ros_packages']:
            key = module
        else:
            problems.append(f'{module} ({where}): no key known; add it to IMPORT_KEYS and '
                            'package.xml')
            continue
        if key is None:
            if module not in snap.get('no_key', {}):
                problems.append(f'{module} ({where}): not recorded as keyless in the snapshot')
            if not re.search(rf'^{re.escape(module)}\b', requirements, re.MULTILINE):
                problems.append(f'{module} ({where}): no key, and not in '
                                'requirements/ros-distro.txt')
        elif key not in declared:
            problems.append(f'{module} ({where}): {key} not declared in package.xml')
    return problems


def test_snapshot_names_its_source():
    snap = snapshot()
    assert snap['source']['repository'] == 'ros/rosdistro'
    assert re.fullmatch(r'[0-9a-f]{40}', snap['source']['commit'])
    assert set(snap['source']['distributions']) >= {'jazzy', 'kilted'}
    lines = SNAPSHOT.read_text().splitlines()
    header = '\n'.join(lines[:next(i for i, x in enumerate(lines) if not x.startswith('#'))])
    assert snap['source']['commit'] in header and 'refresh_rosdep_keys.py' in header


def test_every_depend_key_resolves():
    keys = depends(ROOT / 'package.xml')
    assert 'rclpy' in keys and 'python3-torch' in keys
    assert unknown_keys(keys, snapshot()) == []


def test_every_third_party_import_has_a_declared_key():
    snap = snapshot()
    requirements = (ROOT / 'requirements' / 'ros-distro.txt').read_text()
    runtime = depends(ROOT / 'package.xml', RUNTIME_TAGS)
    everything = depends(ROOT / 'package.xml')
    problems = []
    for d in RUNTIME_DIRS:
        imports = third_party_imports(ROOT / d)
        if d == 'edgent_ros':
            assert {'rclpy', 'torch', 'numpy', 'safetensors'} <= set(imports)
        problems += undeclared_imports(imports, runtime, snap, requirements)
    for d in TEST_DIRS:
        problems += undeclared_imports(third_party_imports(ROOT / d), everything, snap,
                                       requirements)
    assert not problems, '\n'.join(problems)


def test_cmake_find_packages_are_declared():
    cmake = (ROOT / 'CMakeLists.txt').read_text()
    found = set(re.findall(r'find_package\(\s*([A-Za-z0-9_]+)', cmake)) - {'Python3'}
    assert 'ament_cmake' in found
    declared = depends(ROOT / 'package.xml', BUILD_TAGS)
    assert sorted(found - set(declared)) == []


def test_license_and_maintainer():
    root = ET.parse(ROOT / 'package.xml').getroot()
    assert root.findtext('license') == 'Apache-2.0'
    text = (ROOT / 'LICENSE').read_text()
    assert 'Apache License' in text and 'Version 2.0, January 2004' in text
    assert 'END OF TERMS AND CONDITIONS' in text
    assert "license='Apache-2.0'" in (ROOT / 'setup.py').read_text()
    email = root.find('maintainer').get('email')
    assert re.fullmatch(r'[^@\s]+@[^@\s]+\.[a-z]+', email)
    assert not re.search(r'example\.(com|org|net)$', email)


def test_the_checks_can_fail(tmp_path):
    """A made-up key, a pip-only key of another OS and an unmapped import are all reported."""
    snap = snapshot()
    assert unknown_keys(['python3-no-such-thing', 'rclpy', 'python3-numpy'], snap) == \
        ['python3-no-such-thing']
    fake = {'source': snap['source'], 'ros_packages': {},
            'rosdep': {'mac-only': {'rules': {'osx': {'pip': {'packages': ['x']}}}},
                       'old-ubuntu': {'rules': {'ubuntu': {'*': None, 'focal': ['x']}}},
                       'apt': {'rules': {'ubuntu': {'*': ['x']}}},
                       'pip': {'rules': {'ubuntu': {'pip': {'packages': ['x']}}}}}}
    assert unknown_keys(['mac-only', 'old-ubuntu', 'apt', 'pip'], fake) == \
        ['mac-only', 'old-ubuntu']
    (tmp_path / 'mod.py').write_text('import numpy\nimport torch.nn\nfrom somelib import x\n'
                                     'import safetensors\nimport helper\nfrom . import y\n')
    (tmp_path / 'helper.py').write_text('import os\n')
    (tmp_path / 'launch').mkdir()                 # a folder, not a package: still ROS's launch
    (tmp_path / 'launch' / 'test_x.py').write_text('import launch\n')
    imports = third_party_imports(tmp_path)
    where = f'{tmp_path.name}/mod.py'
    assert imports == {**{m: where for m in ('numpy', 'torch', 'somelib', 'safetensors')},
                       'launch': f'{tmp_path.name}/launch/test_x.py'}
    imports.pop('launch')
    problems = undeclared_imports(imports, {'python3-numpy': ['exec_depend']}, snap, '')
    assert len(problems) == 3, problems
    assert any('torch' in p and 'python3-torch not declared' in p for p in problems)
    assert any(p.startswith('somelib') for p in problems)
    assert any(p.startswith('safetensors') and 'ros-distro.txt' in p for p in problems)
