"""Many independent jobs (one per subject) on Dask distributed: a local cluster of worker
processes on this machine by default, or an existing scheduler (a Slurm, PBS, SGE or Kubernetes
cluster started with dask-jobqueue or dask-kubernetes, or ``dask scheduler`` by hand).

Each job is one call of a module-level function on one item; jobs share nothing but files, and
a job never raises: it returns its record (see :mod:`inrsr.jobs.bids_app`), so one subject's
failure cannot stop the others. Without Dask (``n_workers=0``) the jobs run one after the other
in this process, which is what the engine's overhead is measured against.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Iterator, Sequence

from inrsr.errors import InputError, Interrupted

__all__ = ["default_workers", "connect", "check_one_task_per_worker", "run_jobs"]


def default_workers(threads_per_worker: int) -> int:
    """Worker processes of a local cluster: as many as the CPU cores allow at
    ``threads_per_worker`` threads each (at least one)."""
    return max(1, (os.cpu_count() or 1) // max(1, threads_per_worker))


def connect(scheduler: str) -> Any:
    """A Dask client of the running scheduler at ``scheduler`` (``tcp://host:8786``), waiting
    as long as Dask's ``distributed.comm.timeouts.connect`` says (30 s unless configured, e.g.
    ``DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT=10s``); :class:`InputError` when none answers."""
    from dask.distributed import Client

    try:
        return Client(scheduler)
    except (OSError, TimeoutError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else "no answer"
        raise InputError(f"--scheduler {scheduler}: no Dask scheduler answered ({type(exc).__name__}: {reason})") \
            from None


def check_one_task_per_worker(client: Any, scheduler: str) -> None:
    """:class:`InputError` when a worker of the cluster would run several jobs at once: a job
    redirects its process's stderr and warnings, and sets its CPU threads."""
    workers = client.scheduler_info().get("workers", {})
    busy = sorted({int(w.get("nthreads", 1)) for w in workers.values() if int(w.get("nthreads", 1)) > 1})
    if busy:
        client.close()
        raise InputError(f"--scheduler {scheduler}: its workers run {busy[-1]} tasks at once; start them with "
                         "--nthreads 1 (each fit uses --threads-per-worker CPU threads itself)")


def run_jobs(
    job: Callable[[Any], dict], items: Sequence[Any], keys: Sequence[str], *, n_workers: int,
    scheduler: str | None = None,
) -> Iterator[tuple[str, dict | None, BaseException | None]]:
    """Run ``job(item)`` for every item and yield ``(key, record, None)`` as each finishes (in
    the order they finish), or ``(key, None, error)`` when the worker running it died (killed
    for memory, lost). ``keys`` name the jobs on the cluster (one per item, unique).

    ``scheduler``: the address of an existing Dask scheduler (``tcp://host:8786``) to submit to;
    otherwise a local cluster of ``n_workers`` processes running one job at a time each (a job
    sets its own CPU threads), closed afterwards; ``n_workers=0``: no Dask, the jobs run here one
    after the other.
    """
    if scheduler is None and n_workers == 0:
        for key, item in zip(keys, items):
            yield key, job(item), None
        return
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    try:
        if scheduler is not None:
            client = connect(scheduler)
            check_one_task_per_worker(client, scheduler)
        else:
            # memory_limit=0: Dask does not kill a worker for its memory; each fit checks its own
            cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, memory_limit=0,
                                   dashboard_address=None, silence_logs=logging.ERROR)
            client = Client(cluster)
        with client:
            futures = client.map(job, list(items), key=list(keys), pure=False)
            try:
                for future in as_completed(futures):
                    try:
                        yield future.key, future.result(), None
                    except Exception as exc:  # the job itself never raises: its worker failed
                        yield future.key, None, exc
            except KeyboardInterrupt:
                client.cancel(futures)
                raise Interrupted("interrupted; subjects already finished are complete, the others will be run "
                                  "again (or resumed) by the same command") from None
    finally:
        if cluster is not None:
            cluster.close()

