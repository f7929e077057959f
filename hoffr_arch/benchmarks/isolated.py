"""Run a benchmark step in a process of its own, without importing torch and BasicSR again each time.

The benchmarks train and score every model in a process of its own: its peak memory is its own and a
crash or a leak stays there. Starting Python and importing torch, torchvision and BasicSR costs about
10 s of CPU a process on a 2-core machine (``python -X importtime -c 'import hoffr_arch'``), which
a comparison would pay twice per model and once per learning-curve point. So each such process is
forked from a server that imported ``hoffr_arch`` once (multiprocessing's ``forkserver``, whose
server never touches CUDA or starts threads, so forking it is safe); where the platform has no
``forkserver`` (Windows), started by ``spawn``, imports and all. ``run_module`` runs a module as
``python -m`` would (the tests use it to run our command lines without paying the imports).
"""
import atexit
import multiprocessing as mp
import os
import runpy
import sys
import traceback
from concurrent.futures import ProcessPoolExecutor

PRELOAD = ['hoffr_arch']


def _context():
    if 'forkserver' not in mp.get_all_start_methods():
        return mp.get_context('spawn')
    ctx = mp.get_context('forkserver')
    ctx.set_forkserver_preload(PRELOAD)  # read when the server starts: the first call in this process
    return ctx


def run_isolated(fn, *args):
    """``fn(*args)`` in a new process (forked from the preloaded server); returns what it returns and
    raises what it raises. ``fn`` and its arguments must pickle (a module-level function)."""
    with ProcessPoolExecutor(1, mp_context=_context()) as pool:
        return pool.submit(fn, *args).result()


def _main(module, argv, cwd, env, stdout, stderr):
    """In the new process: what ``python -m module argv`` runs, exiting as it would (the exit status of
    ``SystemExit``; 1 with a traceback on stderr for any other exception; ``atexit`` handlers run)."""
    mp.set_start_method(None, force=True)  # as unset as in a new interpreter, not the server's forkserver
    os.environ.update(env)
    if cwd:
        os.chdir(cwd)
    with open(stdout, 'w') as out:
        os.dup2(out.fileno(), 1)
    if stderr == stdout:
        os.dup2(1, 2)
    else:
        with open(stderr, 'w') as err:
            os.dup2(err.fileno(), 2)
    sys.argv = [module, *argv]
    code = 0
    try:
        runpy.run_module(module, run_name='__main__', alter_sys=True)
    except SystemExit as done:
        code = done.code
        if code is not None and not isinstance(code, int):
            print(code, file=sys.stderr)
            code = 1
    except BaseException:  # what the interpreter does with any other uncaught exception
        traceback.print_exc()
        code = 1
    finally:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code or 0)


def run_module(module, argv, stdout, stderr=None, cwd=None, env=None, timeout=None):
    """``python -m module argv`` in a process of its own, forked from the preloaded server: stdout and
    stderr go to the files ``stdout`` and ``stderr`` (the same file if None), ``env`` is added to the
    environment, ``cwd`` is its working directory. Returns its exit status (negative: the signal that
    ended it); past ``timeout`` seconds it is killed and ``TimeoutError`` raised."""
    proc = _context().Process(target=_main, args=(module, [str(a) for a in argv], cwd and str(cwd),
                                                   {k: str(v) for k, v in (env or {}).items()}, str(stdout),
                                                   str(stderr or stdout)))
    proc.start()
    proc.join(timeout)
    if proc.exitcode is None:
        proc.kill()
        proc.join()
        raise TimeoutError(f'python -m {module} ran past {timeout} s')
    return proc.exitcode


def train_isolated(argv, log, root):
    """``python -m hoffr_arch.train ARGV`` in a process of its own, output in ``log``, experiments under
    ``root``; returns the exit status."""
    return run_module('hoffr_arch.train', argv, log, env={'HOFFR_ROOT': root})
