"""``hoffr_arch.benchmarks.isolated.run_module``: ``python -m`` in a process forked from a preloaded server
ends as the interpreter would (exit status, message, traceback, signal, ``atexit``), in a fresh state."""
import pytest

from conftest import python_m

SCRIPT = '''
import atexit, multiprocessing as mp, os, sys, time
atexit.register(lambda: open('atexit_ran', 'w').close())
print('start method', mp.get_start_method(allow_none=True), 'in', os.getcwd(), 'env', os.environ['PROBE'],
      'argv', sys.argv[1:], 'main', __name__)
what = sys.argv[1]
if what == 'exit2':
    sys.exit(2)
if what == 'message':
    sys.exit('error: a message')
if what == 'raise':
    raise ValueError('boom')
if what == 'kill':
    sys.stdout.flush()
    os.kill(os.getpid(), 9)
if what == 'sleep':
    time.sleep(60)
'''


@pytest.fixture
def probe(tmp_path, monkeypatch):
    (tmp_path / 'isolated_probe.py').write_text(SCRIPT)
    monkeypatch.syspath_prepend(str(tmp_path))  # the new process gets this process's sys.path
    (tmp_path / 'cwd').mkdir()
    return tmp_path / 'cwd'


@pytest.mark.parametrize('what, code, stderr', [('ok', 0, ''), ('exit2', 2, ''), ('message', 1, 'error: a message\n'),
                                                ('raise', 1, 'ValueError: boom\n')])
def test_ends_as_the_interpreter_would(probe, what, code, stderr):
    proc = python_m('isolated_probe', what, 'x y', cwd=probe, env={'PROBE': 'given'}, timeout=120)
    assert proc.returncode == code, proc.stderr
    assert proc.stdout == f"start method None in {probe} env given argv ['{what}', 'x y'] main __main__\n"
    assert proc.stderr.endswith(stderr) and ('Traceback (most recent call last)' in proc.stderr) == (what == 'raise')
    assert (probe / 'atexit_ran').exists()


def test_a_signal_is_a_negative_status_and_a_timeout_kills(probe):
    proc = python_m('isolated_probe', 'kill', cwd=probe, env={'PROBE': 'p'}, timeout=120)
    assert proc.returncode == -9 and proc.stdout.startswith('start method None')
    assert not (probe / 'atexit_ran').exists()
    with pytest.raises(TimeoutError, match='isolated_probe ran past 3 s'):
        python_m('isolated_probe', 'sleep', cwd=probe, env={'PROBE': 'p'}, timeout=3)
