"""Whether this process is draining: told to stop, still serving, no longer ready.

One byte of shared memory, made when this module is first imported. gunicorn.conf.py
imports it in the master, so every worker forked afterwards sees the master's flag;
`python -m serving serve` is one process. /readyz reads it (handlers/health.py). Imports
nothing, so it is safe to import anywhere, before gevent patches a worker too.
"""

import mmap

_flag = mmap.mmap(-1, 1)  # anonymous and shared: a fork shares it, not copies it


def begin_draining() -> None:
    _flag[0] = 1


def end_draining() -> None:
    _flag[0] = 0


def draining() -> bool:
    return _flag[0] == 1
