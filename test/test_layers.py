"""
The package's layers, checked on its imports (issue 15; ARCHITECTURE.md draws them).

Every module of ``edgent_ros`` is parsed with ``ast`` and every import is read, the ones inside
functions included, relative ones resolved. The rules:

- ``core`` imports no ROS package (rclpy, the message packages, ``edgent_ros.msg`` ...) and
  nothing from ``offline``, ``nodes``, ``evaluation`` or ``cli``;
- ``offline`` imports no ROS package and nothing from ``nodes``, ``evaluation`` or ``cli``;
- ``nodes`` import ``core`` (and ROS), never ``offline``, ``evaluation`` or ``cli``;
- ``evaluation`` may import ``core``, ``offline`` and ``nodes`` (its testbed runs the nodes and
  profiles hosts), never ``cli``; only ``cli`` imports ``evaluation``;
- only ``cli`` imports ``cli``; the package's ``__init__`` imports no subpackage;
- no import cycle between modules of ``edgent_ros``, hidden in a function or not;
- ``models`` (shipped model factories) is plain torch, like a user's model file: nothing of ours;
- imports are static: no ``__import__`` / ``importlib.import_module``, except in the one module
  that loads the factory a model description names (``DYNAMIC_OK``);
- an import inside a function is only for an optional heavy dependency (``HEAVY``; ROS packages
  in ``nodes``, ``evaluation`` and ``cli``) or for a module of ours that imports one at module
  level (computed from the graph), never to dodge a cycle.

Then, in fresh interpreters, the commands that need no weights load no torch: ``edgent-ros
--help``, ``plan``, ``info`` and the planner node's module.
"""

import ast
from collections import defaultdict
from dataclasses import dataclass
import importlib.util
import os
from pathlib import Path
import re
import subprocess
import sys
from typing import Dict, List, Set

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = 'edgent_ros'
LAYERS = ('core', 'offline', 'nodes', 'evaluation', 'cli', 'models')

# optional heavy dependencies: the only third-party imports allowed inside a function
HEAVY = frozenset({'torch', 'torchvision', 'cv2', 'sklearn', 'scipy', 'matplotlib', 'tqdm',
                   'safetensors', 'rosbags'})
# ROS packages (top-level names); plus any *_msgs, *_srvs, *_interfaces, rcl*, rosidl*, launch*
ROS = frozenset({'rclpy', 'sros2', 'rcl_interfaces',
                 'builtin_interfaces', 'cv_bridge', 'message_filters',
                 'ament_index_python', 'rosbag2_py', 'tf2_ros', 'launch', 'launch_ros',
                 'launch_testing', 'launch_testing_ros'})
# the only module that may import dynamically: it loads the user's model factory by its name
DYNAMIC_OK = frozenset({'edgent_ros.core.described'})
ROS_LAYERS = ('nodes', 'evaluation', 'cli')          # may import ROS packages
# layer -> layers of ours it must not import
FORBIDDEN = {
    'core': {'offline', 'nodes', 'evaluation', 'cli'},
    'offline': {'nodes', 'evaluation', 'cli'},
    'nodes': {'offline', 'evaluation', 'cli'},
    'evaluation': {'cli'},
    'cli': set(),
    'models': {'core', 'offline', 'nodes', 'evaluation', 'cli'},   # plain torch, as a user's
    '': set(LAYERS),                                   # edgent_ros/__init__.py
}


@dataclass(frozen=True)
class Import:
    """One import statement's target, as written in ``module`` at ``line``."""

    module: str          # the importing module, e.g. 'edgent_ros.cli.offline'
    target: str          # the absolute module imported, e.g. 'edgent_ros.core.arch'
    line: int
    lazy: bool           # inside a function (runs when called, not at import)
    implied: bool = False  # the package of a submodule imported by the same statement

    def where(self) -> str:
        return f'{self.module}:{self.line}'


def module_files(root: Path = ROOT) -> Dict[str, Path]:
    """Return ``{dotted module name: path}`` for every ``.py`` file of the package."""
    out = {}
    for path in sorted((root / PACKAGE).rglob('*.py')):
        if '__pycache__' in path.parts:
            continue
        parts = list(path.relative_to(root).with_suffix('').parts)
        if parts[-1] == '__init__':
            parts.pop()
        out['.'.join(parts)] = path
    return out


class _Collector(ast.NodeVisitor):
    """Collect a module's imports, marking those inside a function (``lazy``)."""

    def __init__(self, module: str, is_package: bool, known: Set[str]):
        self.module, self.known = module, known
        self.package = module if is_package else module.rpartition('.')[0]
        self.depth = 0
        self.imports: List[Import] = []
        self.dynamic: List[str] = []

    def _add(self, target: str, node: ast.AST, implied: bool = False) -> None:
        self.imports.append(Import(self.module, target, node.lineno, self.depth > 0, implied))

    def _function(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split('.')
            base = base[:len(base) - (node.level - 1)]
            base = '.'.join(base + ([node.module] if node.module else []))
        else:
            base = node.module
        names = [f'{base}.{a.name}' for a in node.names]
        submodules = [n for n in names if n in self.known or n == f'{PACKAGE}.msg']
        for target in submodules:
            self._add(target, node)
        if node.module or not submodules:     # `from x import name`: x itself is imported
            self._add(base, node, implied=bool(submodules))

    def visit_Call(self, node: ast.Call) -> None:
        f = node.func
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ''
        if name in ('__import__', 'import_module') and self.module not in DYNAMIC_OK:
            self.dynamic.append(f'{self.module}:{node.lineno}: {name}(...)')
        self.generic_visit(node)


def collect(root: Path = ROOT):
    """Return ``(modules, imports, dynamic imports)`` of the package under ``root``."""
    files = module_files(root)
    imports: List[Import] = []
    dynamic: List[str] = []
    for module, path in files.items():
        c = _Collector(module, path.name == '__init__.py', set(files))
        c.visit(ast.parse(path.read_text(encoding='utf-8'), filename=str(path)))
        imports += c.imports
        dynamic += c.dynamic
    return files, imports, dynamic


def layer(module: str) -> str:
    """Return ``module``'s layer: 'core', ..., 'cli', or '' for the package itself."""
    parts = module.split('.')
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else ''


def is_ros(target: str) -> bool:
    """Say whether ``target`` is a ROS package (or our generated messages)."""
    if target == f'{PACKAGE}.msg' or target.startswith(f'{PACKAGE}.msg.'):
        return True
    top = target.split('.')[0]
    return (top in ROS or top.endswith(('_msgs', '_srvs', '_interfaces'))
            or top.startswith(('rcl', 'rosidl', 'launch')))


def ours(target: str, modules) -> bool:
    """Say whether ``target`` is a module of this package (not the generated messages)."""
    return target in modules


def graph(modules, imports) -> Dict[str, Set[str]]:
    """Return the module graph: ``{module: modules of ours it imports}`` (all imports)."""
    g: Dict[str, Set[str]] = defaultdict(set)
    for imp in imports:
        if ours(imp.target, modules) and imp.target != imp.module:
            g[imp.module].add(imp.target)
    return g


def cycles(g: Dict[str, Set[str]]) -> List[List[str]]:
    """Return the strongly connected components with more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    out: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def heavy_at_import(modules, imports) -> Dict[str, Set[str]]:
    """
    Return ``{module: heavy dependencies it loads when imported}``.

    Follows module-level imports only, through our modules; a dependency is a ``HEAVY`` package
    or ``'ros'`` (any ROS package).
    """
    top: Dict[str, List[str]] = defaultdict(list)
    for imp in imports:
        if not imp.lazy:
            top[imp.module].append(imp.target)
    memo: Dict[str, Set[str]] = {}

    def deps(m: str, seen: frozenset) -> Set[str]:
        if m in memo:
            return memo[m]
        out: Set[str] = set()
        for t in top[m]:
            if is_ros(t):
                out.add('ros')
            elif t.split('.')[0] in HEAVY:
                out.add(t.split('.')[0])
            elif ours(t, modules) and t not in seen:
                out |= deps(t, seen | {m})
        memo[m] = out
        return out

    return {m: deps(m, frozenset()) for m in modules}


def layer_violations(modules, imports) -> List[str]:
    """Return one line per import that breaks a layer rule."""
    out = []
    for imp in imports:
        src = layer(imp.module)
        if is_ros(imp.target):
            if src not in ROS_LAYERS:
                out.append(f'{imp.where()}: {src or PACKAGE} imports ROS ({imp.target})')
            continue
        if not ours(imp.target, modules) or imp.target == PACKAGE:
            continue
        dst = layer(imp.target)
        if dst in FORBIDDEN[src] and dst != src:
            out.append(f'{imp.where()}: {src or PACKAGE} imports {dst} ({imp.target})')
    return sorted(set(out))


def lazy_violations(modules, imports) -> List[str]:
    """Return one line per import inside a function that is not for a heavy dependency."""
    heavy = heavy_at_import(modules, imports)
    out = []
    for imp in imports:
        if not imp.lazy or imp.implied or imp.target == PACKAGE:
            continue
        allowed = set(HEAVY) | ({'ros'} if layer(imp.module) in ROS_LAYERS else set())
        if is_ros(imp.target):
            ok = 'ros' in allowed
        elif ours(imp.target, modules):
            ok = bool(heavy[imp.target] & allowed)
        else:
            ok = imp.target.split('.')[0] in HEAVY
        if not ok:
            out.append(f'{imp.where()}: import of {imp.target} inside a function '
                       '(not an optional heavy dependency: move it to the top)')
    return sorted(set(out))


# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope='module')
def package():
    return collect()


def test_every_layer_exists(package):
    modules, imports, _ = package
    assert {layer(m) for m in modules} == {'', *LAYERS}
    assert len(imports) > 100      # the walk saw the package, function-level imports included
    assert any(i.lazy for i in imports)


def test_layer_rules(package):
    modules, imports, _ = package
    bad = layer_violations(modules, imports)
    assert not bad, 'imports across layers (see ARCHITECTURE.md):\n' + '\n'.join(bad)


def test_no_import_cycles(package):
    modules, imports, _ = package
    found = cycles(graph(modules, imports))
    assert not found, 'import cycles (function-level imports included):\n' + '\n'.join(
        ' <-> '.join(c) for c in found)


def test_imports_are_static(package):
    _, _, dynamic = package
    assert not dynamic, 'dynamic imports hide dependencies from readers and this test:\n' + \
        '\n'.join(dynamic)


def test_function_level_imports_only_for_heavy_dependencies(package):
    modules, imports, _ = package
    bad = lazy_violations(modules, imports)
    assert not bad, '\n'.join(bad)


def test_rules_catch_violations(tmp_path):
    """The checks above can fail: a small package that breaks each rule is reported."""
    pkg = tmp_path / PACKAGE
    for sub in LAYERS:
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / '__init__.py').write_text('')
    (pkg / '__init__.py').write_text('')
    (pkg / 'core' / 'a.py').write_text(
        'import rclpy\n\n\ndef f():\n    from ..offline import b\n    import json\n')
    (pkg / 'offline' / 'b.py').write_text('from ..core import a\nimport torch\n')
    (pkg / 'nodes' / 'n.py').write_text('from edgent_ros.evaluation import t\n')
    (pkg / 'evaluation' / 't.py').write_text(
        'import importlib\nfrom ..cli import c\n\n\ndef g():\n    from ..offline import b\n'
        '    importlib.import_module("x")\n')
    (pkg / 'cli' / 'c.py').write_text('def h():\n    from ..core import a\n')
    (pkg / 'offline' / 'd.py').write_text('def k():\n    from ..core import a\n')
    modules, imports, dynamic = collect(tmp_path)
    bad = '\n'.join(layer_violations(modules, imports))
    for line in ('edgent_ros.core.a:1: core imports ROS (rclpy)',
                 'edgent_ros.core.a:5: core imports offline (edgent_ros.offline.b)',
                 'edgent_ros.nodes.n:1: nodes imports evaluation',
                 'edgent_ros.evaluation.t:2: evaluation imports cli'):
        assert line in bad, bad
    assert cycles(graph(modules, imports)) == [['edgent_ros.core.a', 'edgent_ros.offline.b']]
    assert dynamic == ['edgent_ros.evaluation.t:7: import_module(...)']
    lazy = '\n'.join(lazy_violations(modules, imports))
    assert 'core.a:6: import of json' in lazy                      # stdlib: move it up
    assert 'cli.c:2: import of edgent_ros.core.a' not in lazy      # a imports rclpy ...
    assert 'evaluation.t:6' not in lazy                            # ... b imports torch
    assert 'offline.d:2: import of edgent_ros.core.a' in lazy      # ROS: not in offline


# ---------------------------------------------------------------------------------------------
# what needs no weights imports no torch

def _imported(args: List[str]) -> Set[str]:
    """Run ``python -X importtime *args`` from the repository root; return the modules loaded."""
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join([str(ROOT), *filter(None, [env.get('PYTHONPATH')])])
    r = subprocess.run([sys.executable, '-X', 'importtime', *args], cwd=str(ROOT), env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    names = set()
    for line in r.stderr.splitlines():
        m = re.match(r'import time:\s+\d+ \|\s+\d+ \|\s*(\S+)\s*$', line)
        if m:
            names.add(m.group(1))
    assert 'edgent_ros' in names, r.stderr[-2000:]
    return names


def _torch(names: Set[str]) -> List[str]:
    return sorted(n for n in names if n == 'torch' or n.startswith('torch.'))


@pytest.mark.parametrize('argv', [
    ['--help'],
    ['plan', '--bandwidth-mbps', '1', '--deadline-ms', '100'],
    ['info'],
], ids=['help', 'plan', 'info'])
def test_cli_without_torch(argv):
    names = _imported(['-m', f'{PACKAGE}.cli', *argv])
    assert not _torch(names), f'edgent-ros {" ".join(argv)} imported torch'


def test_planner_node_without_torch():
    if importlib.util.find_spec('rclpy') is None:
        pytest.skip('rclpy not available (source scripts/env.sh)')
    names = _imported(['-c', f'import {PACKAGE}.nodes.planner_node'])
    assert f'{PACKAGE}.nodes.planner_node' in names
    assert not _torch(names), 'the planner node imported torch'
