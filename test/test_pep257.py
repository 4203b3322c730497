"""
Docstring style (pydocstyle) with ament_pep257's default convention.

ament_pep257's ``ament`` convention checks every pydocstyle error except D100-D107 (missing
docstrings), D203, D212 and D404; so multi-line docstrings put their summary on the second line
(D213), as ROS 2 Python code does. Like ament it checks every ``*.py`` file (tests included) and
skips folders starting with ``.`` or ``_``.
"""

from pathlib import Path
import subprocess
import sys

import pytest

ROOT = Path(__file__).resolve().parents[1]
AMENT_IGNORE = 'D100,D101,D102,D103,D104,D105,D106,D107,D203,D212,D404'


def python_scripts(folder: Path):
    """Return extensionless Python executables (shebang) in ``folder``."""
    if not folder.is_dir():
        return []
    out = []
    for p in sorted(folder.iterdir()):
        if p.is_file() and not p.suffix:
            with open(p, 'rb') as f:
                first = f.readline(200)
            if first.startswith(b'#!') and b'python' in first:
                out.append(p)
    return out


def run_pydocstyle(paths, cwd: Path, match: str = r'.*\.py') -> subprocess.CompletedProcess:
    """Run pydocstyle on ``paths`` with ament's ignore list; return the finished process."""
    cmd = [sys.executable, '-m', 'pydocstyle', f'--ignore={AMENT_IGNORE}', f'--match={match}',
           r'--match-dir=[^\._].*', *[str(p) for p in paths]]
    return subprocess.run(cmd, cwd=str(cwd), capture_output=True, text=True, timeout=300)


def _check(result: subprocess.CompletedProcess) -> str:
    # pydocstyle exits 1 for violations, 2+ for usage or parse errors: both fail the test
    if result.returncode == 0:
        return ''
    return f'{result.stdout}{result.stderr}' or f'pydocstyle exited {result.returncode}'


@pytest.mark.linter
@pytest.mark.pep257
def test_pep257():
    pytest.importorskip('pydocstyle')
    dirs = [d for d in ('edgent_ros', 'test', 'bench', 'launch') if (ROOT / d).is_dir()]
    assert 'edgent_ros' in dirs and 'test' in dirs
    problems = _check(run_pydocstyle(dirs, ROOT))
    if (ROOT / 'scripts').is_dir():
        problems += _check(run_pydocstyle(['scripts'], ROOT))
    scripts = python_scripts(ROOT / 'scripts')
    if scripts:   # extensionless executables do not match *.py: name them explicitly
        problems += _check(run_pydocstyle([p.relative_to(ROOT) for p in scripts], ROOT, '.*'))
    assert not problems, f'Found code style errors / warnings:\n{problems}'


@pytest.mark.linter
@pytest.mark.pep257
def test_pep257_reports_violations(tmp_path):
    """The check above can fail: known docstring problems make pydocstyle exit non-zero."""
    pytest.importorskip('pydocstyle')
    (tmp_path / 'test_bad.py').write_text(
        'def f():\n    """does a thing"""\n\n\n'
        'def g():\n    """Summary on the first line.\n\n    More.\n    """\n')
    (tmp_path / 'good.py').write_text(
        'def f():\n    pass\n\n\n'                                # D103 is ignored
        'def g():\n    """\n    Summary on the second line.\n\n    More.\n    """\n')
    hidden = tmp_path / '.hidden'
    hidden.mkdir()
    (hidden / 'bad.py').write_text('def f():\n    """no"""\n')
    result = run_pydocstyle(['.'], tmp_path)
    assert result.returncode == 1
    out = result.stdout + result.stderr
    for code in ('D400', 'D403', 'D213'):
        assert code in out, out
    assert 'test_bad.py' in out                  # test files are checked, like ament does
    assert 'good.py' not in out and '.hidden' not in out
