"""
The two install paths: `pip install .` (pure core + CLI, no ROS) and the ament/colcon build.

They share the package name ``edgent_ros``; ``extend_path`` in its ``__init__`` must let
``edgent_ros.msg`` (ament install only) and the pure modules import whichever comes first.
"""

import os
from pathlib import Path
import subprocess
import sys

import pytest

ROOT = Path(__file__).resolve().parents[1]
INSTALL_SITE = ROOT / '.ros' / 'install' / 'edgent_ros' / 'lib' / 'python3.11' / 'site-packages'


@pytest.fixture(scope='module')
def pip_target(tmp_path_factory):
    """`pip install --no-deps .` into a fresh target folder (deps come from this venv)."""
    import shutil
    target = tmp_path_factory.mktemp('pip_target')
    src = tmp_path_factory.mktemp('src')   # what an sdist holds: setup.py + the package
    shutil.copy(ROOT / 'setup.py', src)
    shutil.copytree(ROOT / 'edgent_ros', src / 'edgent_ros',
                    ignore=shutil.ignore_patterns('__pycache__'))
    subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-deps',
                    '--no-build-isolation', '--target', str(target), str(src)],
                   check=True, cwd=src)
    return target


def _run(code, pythonpath, cwd):
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'AMENT_PREFIX_PATH')}
    env['PYTHONPATH'] = os.pathsep.join(str(p) for p in pythonpath)
    return subprocess.run([sys.executable, '-c', code], env=env, cwd=cwd,
                          capture_output=True, text=True)


def test_pip_install_gives_core_and_cli_without_ros(pip_target, tmp_path):
    r = _run('import edgent_ros.cli.main as c, sys; sys.exit(c.main(["layers", "--json"]))',
             [pip_target], tmp_path)
    assert r.returncode == 0, r.stderr
    assert '"model_id"' in r.stdout and '"output_bytes"' in r.stdout
    r = _run('import edgent_ros.core.weights as w; m = w.load_model(); print(m.model_id)',
             [pip_target], tmp_path)
    assert r.returncode == 0 and r.stdout.startswith('alexnet5-'), r.stderr
    assert (pip_target / 'bin' / 'edgent-ros').exists()
    r = _run('import edgent_ros.msg', [pip_target], tmp_path)
    assert r.returncode != 0 and 'edgent_ros.msg' in r.stderr


@pytest.mark.skipif(not INSTALL_SITE.is_dir(), reason='ament install not built')
@pytest.mark.parametrize('pip_first', [True, False])
def test_both_installs_on_one_path_do_not_shadow(pip_target, tmp_path, pip_first):
    order = [pip_target, INSTALL_SITE] if pip_first else [INSTALL_SITE, pip_target]
    code = ('import edgent_ros.core.model, edgent_ros.core.optimizer, edgent_ros.msg as m; '
            'print(m.Tensor.DATA_TYPE_FLOAT32, edgent_ros.core.model.NUM_EXITS)')
    r = _run(code, order, tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ['9', '5']
