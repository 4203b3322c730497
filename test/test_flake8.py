"""
Flake8 over the package, tests, benchmarks, launch files and scripts (ament_flake8 settings).

Runs the interpreter's own ``python -m flake8`` (the venv's, not whatever is on ``PATH``) with
ament_flake8's line length (99) and ignore list; ament's optional plugins (import order, quotes,
builtins, comprehensions, docstrings) only run when they are installed.
"""

from pathlib import Path
import subprocess
import sys

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINE_LENGTH = 99
EXCLUDE = '.venv,.ros,build,install,log,.git,__pycache__,*.egg-info,.pytest_cache'
# ament_flake8.ini extend-ignore (plugin codes are inert without their plugins)
AMENT_EXTEND_IGNORE = ('B902,C816,D100,D101,D102,D103,D104,D105,D106,D107,D203,D212,D404,'
                       'I202')


def python_scripts(folder: Path):
    """Return ``*.py`` files and extensionless Python executables (shebang) in ``folder``."""
    if not folder.is_dir():
        return []
    out = []
    for p in sorted(folder.iterdir()):
        if not p.is_file():
            continue
        if p.suffix == '.py':
            out.append(p)
        elif not p.suffix:
            with open(p, 'rb') as f:
                first = f.readline(200)
            if first.startswith(b'#!') and b'python' in first:
                out.append(p)
    return out


def lint_targets():
    """Return the folders and script files to check, relative to the repository root."""
    dirs = [d for d in ('edgent_ros', 'test', 'bench', 'launch') if (ROOT / d).is_dir()]
    return dirs + [str(p.relative_to(ROOT)) for p in python_scripts(ROOT / 'scripts')]


def run_flake8(paths, cwd: Path) -> subprocess.CompletedProcess:
    """Run flake8 on ``paths`` with the ament settings; return the finished process."""
    cmd = [sys.executable, '-m', 'flake8', f'--max-line-length={MAX_LINE_LENGTH}',
           f'--exclude={EXCLUDE}', f'--extend-ignore={AMENT_EXTEND_IGNORE}',
           '--show-source', *[str(p) for p in paths]]
    return subprocess.run(cmd, cwd=str(cwd), capture_output=True, text=True, timeout=300)


@pytest.mark.linter
@pytest.mark.flake8
def test_flake8():
    pytest.importorskip('flake8')
    targets = lint_targets()
    assert 'edgent_ros' in targets and 'test' in targets
    result = run_flake8(targets, ROOT)
    assert result.returncode == 0, \
        f'flake8 found code style errors / warnings:\n{result.stdout}{result.stderr}'


@pytest.mark.linter
@pytest.mark.flake8
def test_flake8_reports_violations(tmp_path):
    """The check above can fail: a file with known problems makes flake8 exit non-zero."""
    pytest.importorskip('flake8')
    (tmp_path / 'bad.py').write_text('import os\nx=1\ny = "' + 'a' * MAX_LINE_LENGTH + '"\n')
    (tmp_path / 'ok.py').write_text('"""Fine."""\n\nX = "' + 'a' * (MAX_LINE_LENGTH - 6) + '"\n')
    (tmp_path / 'script').write_text('#!/usr/bin/env python3\nimport sys\n')
    result = run_flake8(['bad.py', 'ok.py', 'script'], tmp_path)
    assert result.returncode == 1
    for code in ('bad.py:1:1: F401', 'bad.py:2:2: E225', 'bad.py:3:100: E501',
                 'script:2:1: F401'):
        assert code in result.stdout, result.stdout
    assert 'ok.py' not in result.stdout
    assert python_scripts(tmp_path) == [tmp_path / 'bad.py', tmp_path / 'ok.py',
                                        tmp_path / 'script']
