"""Where the units of long work run (a sweep's runs, a record audit's updates): in this
process, in worker processes, or as Ray tasks. Sweeps and record audits share them.

A backend calls ``work(unit)`` for every unit and hands each outcome (the unit's line, or the
exception that ended its process) to ``done`` in this process as soon as it arrives, so the
caller records every finished unit as it goes. Interrupted (Ctrl-C, or SIGTERM turned into
``Terminated`` by the command line), a backend first hands over the units that had finished,
then cancels the queued ones and ends its workers before the interruption goes on: nothing
finished is lost and no worker outlives the command.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from functools import partial
from typing import TypeVar

from ..checks import GradinvError, one_line

T = TypeVar("T")
Done = Callable[[T, "dict | BaseException"], None]
Backend = Callable[[Callable[[T], dict], Sequence[T], int, Done], None]
BACKENDS = ("local", "ray")
# How long a worker asked to stop (SIGTERM) may take before it is killed.
STOP_SECONDS = 5.0
# How long reaching a Ray cluster's address may take: Ray itself retries for minutes.
CONNECT_SECONDS = 5.0


class Terminated(BaseException):
    """SIGTERM, raised in the main thread like KeyboardInterrupt is for SIGINT, so the same
    clean-up runs (``sigterm_raises``). Not an ``Exception``: nothing records it as a unit's
    failure."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block SIGTERM raises ``Terminated`` in the main thread (by default it ends
    the process at once, leaving its workers orphaned and finished units unrecorded)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def local_backend(work: Callable[[T], dict], units: Sequence[T], workers: int,
                  done: Done) -> None:
    """Runs in ``workers`` spawned processes (each with its share of the CPU threads); one
    worker runs them in this process. The default backend."""
    if workers == 1:
        for unit in units:
            done(unit, work(unit))
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    with _sigint_ignored():  # inherited by the workers: Ctrl-C reaches only this process
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(threads,))
        futures = {pool.submit(work, unit): unit for unit in units}
    reported: set[Future] = set()
    try:
        for future in as_completed(futures):
            done(futures[future], _outcome(future))
            reported.add(future)
    except BaseException:
        for future in futures:
            future.cancel()
        try:
            for future, unit in futures.items():  # finished before the interruption: kept
                if future.done() and not future.cancelled() and future not in reported:
                    done(unit, _outcome(future))
        finally:
            _stop(pool)
        raise
    pool.shutdown()


def _outcome(future: Future) -> dict | BaseException:
    """The unit's line, or the error of a worker that died (e.g. out of memory)."""
    try:
        return future.result()
    except Exception as err:  # noqa: BLE001 - handed to the caller, which records it
        return err


def _init_worker(threads: int) -> None:
    import torch
    torch.set_num_threads(threads)


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored while worker processes start (they keep ignoring it); the main thread
    only, where signal handlers live."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def _stop(pool: ProcessPoolExecutor) -> None:
    """End the pool's workers now (SIGTERM, then SIGKILL after ``STOP_SECONDS``); with them
    gone, multiprocessing's resource tracker sees its pipe close and exits too."""
    processes = list(pool._processes.values())  # the executor has no public handle on them
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(STOP_SECONDS)
        if process.is_alive():
            process.kill()
            process.join()


def ray_backend(work: Callable[[T], dict], units: Sequence[T], workers: int, done: Done, *,
                address: str | None = None, gpus_per_run: float = 0.0) -> None:
    """Runs as Ray tasks, on the cluster at ``address`` or on a local instance of ``workers``
    CPUs started here and shut down afterwards; ``gpus_per_run`` (a fraction shares a GPU)
    spreads runs over a cluster's GPUs. Output folders must be on storage every node sees."""
    try:
        import ray
    except ImportError:
        raise GradinvError("the Ray backend needs Ray: pip install 'gradinv[ray]'") from None
    started = not ray.is_initialized()
    if started:
        _connect(ray, address, workers)
    pending: dict = {}
    try:
        task = ray.remote(num_cpus=1, num_gpus=gpus_per_run)(_call)
        pending = {task.remote(work, unit): unit for unit in units}
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            done(pending[ref], _ray_outcome(ray, ref))
            del pending[ref]
    except BaseException:
        if pending:
            ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0)
            try:
                for ref in ready:  # finished before the interruption: handed over, not lost
                    done(pending.pop(ref), _ray_outcome(ray, ref))
            finally:
                for ref in pending:
                    ray.cancel(ref, force=True)
        raise
    finally:
        if started:
            ray.shutdown()


def _call(work: Callable[[T], dict], unit: T) -> dict:
    """``work(unit)``: Ray makes tasks of functions only, and ``work`` may be a partial."""
    return work(unit)


def _connect(ray, address: str | None, workers: int) -> None:
    """Start a local instance, or join the cluster at ``address``; one clear line when nothing
    answers there (Ray would retry for minutes)."""
    if address is not None:
        check_reachable(address)
    before = signal.getsignal(signal.SIGTERM)
    try:
        with warnings.catch_warnings():  # a tip about a future default, not about this run
            warnings.filterwarnings("ignore", "Tip: In future versions of Ray", FutureWarning)
            ray.init(address=address, num_cpus=None if address else workers,
                     include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING)
    except ConnectionError as err:
        raise GradinvError(f"cannot connect to a Ray cluster at {address} "
                           f"({one_line(err)})") from None
    finally:  # ray.init makes SIGTERM exit at once, skipping the clean-up and the last line
        if before is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, before)


def check_reachable(address: str) -> None:
    """A ``host:port`` (or ``ray://host:port``) address must accept a connection within
    ``CONNECT_SECONDS``; ``auto`` and ``local`` are Ray's to resolve."""
    if address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise GradinvError(f"--address {address!r} is not host:port (or ray://host:port, "
                           "auto)")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_SECONDS).close()
    except OSError as err:
        raise GradinvError(f"cannot reach a Ray cluster at {address}: "
                           f"{err.strerror or 'no answer'} (is 'ray start --head' running "
                           "there?)") from None


def _ray_outcome(ray, ref) -> dict | BaseException:
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as err:  # the task's process died
        return err


def choose_backend(name: str, *, address: str | None = None,
                   gpus_per_run: float | None = None) -> Backend:
    """The backend called ``name`` (``BACKENDS``) with its settings; Ray's settings are refused
    for the local one."""
    if name == "local":
        if address or gpus_per_run:
            raise GradinvError("--address and --gpus-per-run only apply to --backend ray")
        return local_backend
    if name != "ray":
        raise GradinvError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return partial(ray_backend, address=address, gpus_per_run=gpus_per_run or 0.0)
