"""core.paths: the user directory for outputs and where data sets are found."""

from pathlib import Path

import pytest

from edgent_ros.core import paths
from edgent_ros.core.datasets import cifar10_dir, load_split
from edgent_ros.core.paths import (artifacts_out, data_candidates, DataNotFoundError, find_data,
                                   results_out, user_dir)


def test_user_dir_order():
    assert user_dir({'EDGENT_ROS_HOME': '/h', 'XDG_DATA_HOME': '/x'}) == Path('/h')
    assert user_dir({'XDG_DATA_HOME': '/x'}) == Path('/x/edgent_ros')
    home_default = Path.home() / '.local' / 'share' / 'edgent_ros'
    assert user_dir({}) == home_default
    assert user_dir({'XDG_DATA_HOME': 'relative'}) == home_default   # XDG: absolute only
    assert user_dir({'EDGENT_ROS_HOME': ''}) == home_default          # empty = unset
    assert artifacts_out('m.json', {'EDGENT_ROS_HOME': '/h'}) == Path('/h/artifacts/m.json')
    assert results_out('', {'EDGENT_ROS_HOME': '/h'}) == Path('/h/results')


def test_user_dir_is_never_the_package(edgent_home):
    assert user_dir() == edgent_home
    assert paths.PACKAGE_DIR not in artifacts_out().parents


def test_data_candidates():
    env = {'EDGENT_ROS_HOME': '/h'}
    cands = data_candidates('traces', env)
    assert cands[0] == Path('/h/data/traces')
    if paths.checkout_data_dir() is not None:           # running from a source checkout
        assert cands[1:] == [paths.PACKAGE_DIR.parent.parent / 'shared' / 'data' / 'traces']
    # the variable, when set, is the only place looked at
    assert data_candidates('cifar10', {'EDGENT_ROS_DATA': '/d', **env}) == [Path('/d/cifar10')]
    with pytest.raises(ValueError, match='imagenet'):
        data_candidates('imagenet', env)


def test_find_data(tmp_path):
    (tmp_path / 'home' / 'data' / 'traces').mkdir(parents=True)
    (tmp_path / 'd' / 'traces').mkdir(parents=True)
    env = {'EDGENT_ROS_HOME': str(tmp_path / 'home')}
    assert find_data('traces', environ=env) == tmp_path / 'home' / 'data' / 'traces'
    env['EDGENT_ROS_DATA'] = str(tmp_path / 'd')
    assert find_data('traces', environ=env) == tmp_path / 'd' / 'traces'
    given = tmp_path / 'mine'
    given.mkdir()
    assert find_data('traces', given, environ=env) == given      # the option wins
    with pytest.raises(DataNotFoundError, match=r'--traces-dir\)'):
        find_data('traces', tmp_path / 'none', option='--traces-dir', environ=env)
    env['EDGENT_ROS_DATA'] = str(tmp_path / 'empty')
    with pytest.raises(DataNotFoundError) as exc:
        find_data('cifar10', environ=env)
    msg = str(exc.value)
    assert str(tmp_path / 'empty' / 'cifar10') in msg
    assert '--data-dir' in msg and 'EDGENT_ROS_DATA' in msg
    assert isinstance(exc.value, FileNotFoundError)


def test_load_split_names_the_option_and_variable(tmp_path, monkeypatch):
    monkeypatch.setenv('EDGENT_ROS_DATA', str(tmp_path))
    with pytest.raises(FileNotFoundError, match='EDGENT_ROS_DATA'):
        load_split('test')
    (tmp_path / 'cifar10').mkdir()                        # found, but without the archive
    assert cifar10_dir() == tmp_path / 'cifar10'
    with pytest.raises(FileNotFoundError, match=r'test\.tar\.gz.*--data-dir'):
        load_split('test')
