"""A node process that hangs after its first signal leaves every thread's stack on stderr."""

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent('''
    import os, signal, threading, time
    from edgent_ros.nodes.signals import install, signalled
    install()
    def stuck_worker():
        time.sleep(60)
    threading.Thread(target=stuck_worker, name='stuck', daemon=True).start()
    os.kill(os.getpid(), signal.SIGINT)
    assert signalled() == signal.SIGINT
    print('signalled', flush=True)
    time.sleep({hang})
    print('exited', flush=True)
''')


def _run(hang: float, env_value: str) -> subprocess.CompletedProcess:
    env = {'PATH': '/usr/bin:/bin', 'PYTHONPATH': str(REPO), 'EDGENT_HANG_DUMP_S': env_value}
    return subprocess.run([sys.executable, '-c', SCRIPT.format(hang=hang)], env=env,
                          capture_output=True, text=True, timeout=60)


def test_a_shutdown_that_hangs_dumps_every_thread():
    proc = _run(3.0, '0.5')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ['signalled', 'exited']   # the dump does not end the process
    assert 'most recent call first' in proc.stderr
    assert 'stuck_worker' in proc.stderr        # the other thread's stack too


def test_a_prompt_exit_and_a_disabled_dump_write_nothing():
    assert _run(0.1, '2').stderr == ''           # exited before the delay
    assert _run(1.0, '0').stderr == ''           # 0: never
    assert _run(1.0, 'nonsense').stderr == ''    # unreadable: the default 4.5 s
