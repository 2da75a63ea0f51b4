"""Evaluators: the one place where evaluations run in parallel.

Everything that evaluates many points (``minimize``, RL training, estimator
studies) calls ``evaluator.map(fn, items, shared)``, which returns
``[fn(shared, item) for item in items]`` in order. ``fn`` must be a pure
function of ``(shared, item)``: then the result does not depend on the backend,
the number of workers or the chunking, bit for bit.

joblib is the only parallel interface (loky on one machine; joblib's dask
backend for a Dask cluster; Ray's joblib backend for Ray). Nothing here
schedules work itself; the evaluator only

* cuts ``items`` into a few contiguous chunks so that ``shared`` (policy
  parameters, a normalizer snapshot, the objective) is pickled once per chunk,
  not once per item (OpenAI-ES / ARS style: items are small ``(seed, index)``
  tuples and workers regenerate their perturbations from the seed);
* re-runs the chunks whose results did not come back when a worker process
  dies (``max_retries`` times). Because ``fn`` is deterministic the re-run gives
  identical numbers, and nothing is counted twice: counts are taken from the
  results that were returned, once per item;
* records ``last_traffic``, an estimate of the payload of the last map call.

Example:
    >>> from dfo.parallel import make_evaluator
    >>> def square(shared, item):
    ...     return shared * item * item
    >>> with make_evaluator("serial") as ev:
    ...     ev.map(square, [1, 2, 3], shared=10)
    [10, 40, 90]
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

import joblib

__all__ = [
    "BACKENDS",
    "Evaluator",
    "JoblibEvaluator",
    "SerialEvaluator",
    "chunk_bounds",
    "make_evaluator",
    "payload_bytes",
    "check_scheduler_address",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Backend names understood by :func:`make_evaluator`.
BACKENDS: tuple[str, ...] = ("serial", "loky", "dask", "local-dask", "ray")

#: seconds to wait for a Dask scheduler before giving up with a clear message
DASK_CONNECT_TIMEOUT_S = 10.0

#: seconds between a loky worker's checks that the process that started it is alive
PARENT_CHECK_S = 1.0

_ADDRESS = re.compile(r"(tcp|tls|ws|wss|ucx)://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9])?):(\d{1,5})")


def check_scheduler_address(address: str) -> str:
    """Return ``address`` if it reads ``tcp://HOST:PORT`` (or tls, ws, wss, ucx), else raise at once.

    Example:
        >>> check_scheduler_address("tcp://10.0.0.1:8786")
        'tcp://10.0.0.1:8786'
        >>> check_scheduler_address("10.0.0.1")
        Traceback (most recent call last):
        ...
        ValueError: malformed Dask scheduler address '10.0.0.1': expected tcp://HOST:PORT, e.g. tcp://10.0.0.1:8786
    """
    m = _ADDRESS.fullmatch(address) if isinstance(address, str) else None
    if m is None or not 0 < int(m.group(3)) < 65536:
        raise ValueError(f"malformed Dask scheduler address {address!r}: expected tcp://HOST:PORT, "
                         "e.g. tcp://10.0.0.1:8786")
    return address


def _exit_with_parent(parent_pid: int) -> None:
    """loky worker initializer: end this worker when the process that started it is gone.

    loky keeps idle workers for minutes; a trainer killed with SIGKILL cannot shut them
    down, so each worker watches its parent from a daemon thread and exits when it has
    been re-parented.
    """
    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                os._exit(0)
            time.sleep(PARENT_CHECK_S)

    threading.Thread(target=watch, name="dfo-parent-watch", daemon=True).start()


#: what every Python process a backend starts finds in its environment: ``PYTHONSAFEPATH=1`` (Python >= 3.11)
#: keeps the working directory (``python -c``, ``python -m``) off the front of its import path
SAFE_PATH_ENV = {"PYTHONSAFEPATH": "1"}

_safe_path_lock = threading.Lock()
_safe_path_users = 0
_safe_path_set_here = False


def _enter_safe_path() -> None:
    """Put :data:`SAFE_PATH_ENV` into this process's environment while an evaluator is open.

    loky starts its workers with ``python -m ...`` and its resource tracker with ``python -c ...``;
    Dask's nannies start workers with ``python -c ...``. Python puts the current directory first on
    the import path of such a process, so a ``joblib.py``, ``lz4.py`` or ``org.py`` lying in the folder
    where ``dfo train`` was started would run in every helper (L1). With ``PYTHONSAFEPATH=1`` inherited
    they start with the installed packages only; the caller's own import path (``sys.path``, including
    the folder of a module named with ``--import``) still reaches the workers, which copy it.
    """
    global _safe_path_users, _safe_path_set_here
    with _safe_path_lock:
        if _safe_path_users == 0 and os.environ.get("PYTHONSAFEPATH") != "1":
            os.environ.update(SAFE_PATH_ENV)
            _safe_path_set_here = True
        _safe_path_users += 1


def _exit_safe_path() -> None:
    global _safe_path_users, _safe_path_set_here
    with _safe_path_lock:
        _safe_path_users = max(0, _safe_path_users - 1)
        if _safe_path_users == 0 and _safe_path_set_here:
            os.environ.pop("PYTHONSAFEPATH", None)
            _safe_path_set_here = False


def _safe_loky_backend(**kw: Any) -> Any:
    """joblib's loky backend whose workers start with :data:`SAFE_PATH_ENV` (set before the interpreter
    starts, so ``python -m`` never imports from the working directory)."""
    from joblib._parallel_backends import LokyBackend

    class SafePathLokyBackend(LokyBackend):
        def _prepare_worker_env(self, n_jobs: int) -> dict[str, str]:
            return {**super()._prepare_worker_env(n_jobs), **SAFE_PATH_ENV}

    return SafePathLokyBackend(**kw)


#: scheduler address -> credentials of the local-dask clusters this process started (so that a ``dask``
#: evaluator of this process may join one; no other process holds them)
_LOCAL_CLUSTERS: dict[str, Any] = {}


def local_dask_security() -> Any:
    """Credentials of a ``local-dask`` cluster: mutual TLS with a certificate made for this run (D1).

    ``distributed.security.Security.temporary()`` makes a fresh self-signed certificate and key in
    memory (never written to disk) and requires it of every connection: the scheduler, workers and
    nannies accept only peers that present it, and the trainer's client is the only holder outside
    the cluster. Another process on the machine — another user, or a program of yours — can still
    open a TCP connection to the loopback port, but the TLS handshake fails, so it can neither submit
    work nor read results. Needs the ``cryptography`` package (a dependency of ``distributed``'s TLS).

    Raises:
        ImportError: ``cryptography`` is missing (the message says what to install).
    """
    from distributed.security import Security

    try:
        return Security.temporary()
    except ImportError as exc:
        raise ImportError("backend 'local-dask' secures its cluster with a per-run TLS certificate, which "
                          "needs the 'cryptography' package: pip install cryptography") from exc


#: ``batch="auto"`` cuts a map call into this many chunks per worker (two, so
#: that uneven item costs, e.g. episodes that terminate early, still balance).
AUTO_CHUNKS_PER_WORKER = 2


@runtime_checkable
class Evaluator(Protocol):
    """What every evaluator provides.

    ``map(fn, items, shared)`` returns ``[fn(shared, item) for item in items]``
    in order; ``n_workers`` is the number of evaluations that can run at once.
    """

    n_workers: int

    def map(self, fn: Callable[[Any, Any], T], items: Sequence[Any], shared: Any = None) -> list[T]:
        """Evaluate ``fn(shared, item)`` for every item, results in item order."""
        ...


def payload_bytes(obj: Any) -> int:
    """Length of ``pickle.dumps(obj)`` (cloudpickle for lambdas and local functions).

    This estimates the payload that crosses a process boundary, not the wire
    traffic (framing, compression, scheduler messages are not included).

    Example:
        >>> payload_bytes(list(range(3))) > 0
        True
    """
    try:
        return len(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
    except (pickle.PicklingError, AttributeError, TypeError):
        try:
            import cloudpickle
        except ImportError:  # older joblib vendored it
            from joblib.externals import cloudpickle  # type: ignore[no-redef]

        return len(cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


def chunk_bounds(n_items: int, n_chunks: int) -> list[tuple[int, int]]:
    """Cut ``range(n_items)`` into ``n_chunks`` contiguous ranges of near-equal size.

    The first ``n_items % n_chunks`` chunks get one item more. Empty chunks are
    never produced (``n_chunks`` is capped at ``n_items``).

    Example:
        >>> chunk_bounds(7, 3)
        [(0, 3), (3, 5), (5, 7)]
    """
    if n_items <= 0:
        return []
    n_chunks = max(1, min(int(n_chunks), n_items))
    size, extra = divmod(n_items, n_chunks)
    bounds, start = [], 0
    for i in range(n_chunks):
        stop = start + size + (1 if i < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def _run_chunk(fn: Callable[[Any, Any], T], shared: Any, index: int, chunk: list[Any]) -> tuple[int, list[T]]:
    """One joblib task: evaluate a contiguous chunk; tagged with its index."""
    return index, [fn(shared, item) for item in chunk]


class _Closing:
    """Context-manager plumbing shared by the evaluators."""

    def close(self) -> None:
        """Release workers and clusters this evaluator started (idempotent)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __del__(self):  # pragma: no cover - best effort at interpreter exit
        try:
            self.close()
        except Exception:
            pass


class SerialEvaluator(_Closing):
    """Runs every evaluation in the calling process, one after the other.

    ``last_traffic`` reports zero bytes: nothing crosses a process boundary.

    Example:
        >>> ev = SerialEvaluator()
        >>> ev.map(lambda shared, i: shared + i, range(3), shared=100)
        [100, 101, 102]
        >>> ev.last_traffic["sent"]
        0
    """

    n_workers: int = 1

    def __init__(self) -> None:
        self.last_traffic: dict[str, int] = _traffic()

    def map(self, fn: Callable[[Any, Any], T], items: Sequence[Any], shared: Any = None) -> list[T]:
        """Return ``[fn(shared, item) for item in items]``."""
        out = [fn(shared, item) for item in items]
        self.last_traffic = _traffic(items=len(out))
        return out

    def __repr__(self) -> str:
        return "SerialEvaluator()"


def _traffic(sent: int = 0, received: int = 0, chunks: int = 0, items: int = 0, retries: int = 0) -> dict[str, int]:
    return {"sent": sent, "received": received, "chunks": chunks, "items": items, "retries": retries}


def _lost_worker_errors(backend: str) -> tuple[type[BaseException], ...]:
    """Exception types that mean "a worker died", per backend (not errors raised by fn)."""
    from joblib.externals.loky.process_executor import TerminatedWorkerError

    # Not BrokenProcessPool in general: loky raises it for a task that cannot be
    # unpickled, which a re-run would not fix.
    errors: list[type[BaseException]] = [TerminatedWorkerError]
    if backend in ("dask", "local-dask"):
        from distributed.comm.core import CommClosedError
        from distributed.scheduler import KilledWorker

        errors += [KilledWorker, CommClosedError]
    if backend == "ray":
        import ray.exceptions as rex

        for name in ("WorkerCrashedError", "RayActorError", "NodeDiedError", "LocalRayletDiedError"):
            if hasattr(rex, name):
                errors.append(getattr(rex, name))
    return tuple(errors)


def _cluster_only_dask_backend():
    from joblib._dask import DaskDistributedBackend

    class ClusterOnlyDaskBackend(DaskDistributedBackend):
        """joblib's dask backend, never falling back to running in the client.

        joblib runs a call in the calling process when the effective number of
        jobs is 1; for a cluster with a single worker thread that would silently
        move the work off the cluster. Reporting at least 2 keeps it there (dask
        queues the extra task).
        """

        def effective_n_jobs(self, n_jobs):
            return max(2, super().effective_n_jobs(n_jobs))

    return ClusterOnlyDaskBackend


class JoblibEvaluator(_Closing):
    """Evaluates chunks of items in parallel through ``joblib.Parallel``.

    Args:
        n_jobs: number of workers for ``loky``, ``local-dask`` and ``ray``;
            ``-1`` means all cores. Ignored by ``dask``, which uses every worker
            thread of the cluster. With ``loky`` and ``n_jobs=1`` joblib runs the
            chunks in the calling process (no worker, nothing to lose).
        backend: ``"loky"`` (processes on this machine), ``"dask"`` (an existing
            Dask cluster, see ``scheduler``), ``"local-dask"`` (starts a
            ``dask.distributed.LocalCluster`` of ``n_jobs`` single-threaded worker
            processes on 127.0.0.1, closed by :meth:`close`) or ``"ray"`` (Ray's
            joblib backend; starts a local Ray unless one is running).
        scheduler: for ``"dask"``: ``"tcp://host:port"`` or a
            ``distributed.Client`` (not closed by :meth:`close`).
        max_retries: how many times the chunks lost to a dead worker are re-run
            before the error is raised. Errors raised by ``fn`` are never retried.
        batch: ``"auto"`` (two chunks per worker) or the number of items per chunk.
        measure_traffic: fill ``last_traffic`` (pickles ``shared`` once more per
            map call in this process; turn off if ``shared`` is huge).

    The joblib pool is opened once and kept across map calls, so loky workers
    and their per-process caches (e.g. an env built once per worker) persist
    between iterations. Use the evaluator as a context manager or call
    :meth:`close`. Note that loky evaluators in one process share joblib's
    reusable worker pool: two of them with different ``n_jobs`` resize (and
    restart) it in turn, so keep one loky evaluator per process.

    ``last_traffic`` after a map call is a dict with ``sent`` (pickled bytes of
    ``(fn, shared)`` per dispatched chunk plus the chunk's items), ``received``
    (pickled bytes of the returned chunk results), ``chunks`` (dispatched, retries
    included), ``items`` and ``retries``. It estimates payload, not wire
    overhead; the dask backend scatters ``shared`` once per call, so its
    ``sent`` is an upper bound.

    Example:
        >>> import operator
        >>> with JoblibEvaluator(n_jobs=2) as ev:
        ...     ev.map(operator.mul, range(5), shared=3)
        [0, 3, 6, 9, 12]
    """

    def __init__(
        self,
        n_jobs: int = -1,
        backend: str = "loky",
        *,
        scheduler: Any = None,
        max_retries: int = 2,
        batch: int | str = "auto",
        measure_traffic: bool = True,
    ) -> None:
        if backend not in ("loky", "dask", "local-dask", "ray"):
            raise ValueError(
                f"unknown joblib backend {backend!r}; valid: 'loky', 'dask', 'local-dask', 'ray' "
                "(or use SerialEvaluator / make_evaluator('serial'))"
            )
        if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0 or n_jobs < -1:
            raise ValueError(f"n_jobs must be a positive int or -1 (all cores), got {n_jobs!r}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")
        if batch != "auto" and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
            raise ValueError(f"batch must be 'auto' or a positive number of items per chunk, got {batch!r}")
        if backend == "dask" and scheduler is None:
            raise ValueError(
                "backend 'dask' needs scheduler='tcp://host:port' or an existing distributed.Client; "
                "use backend 'local-dask' to start a cluster on this machine"
            )
        if scheduler is not None and backend not in ("dask",):
            raise ValueError(f"scheduler is only used by backend 'dask', not {backend!r}")
        if isinstance(scheduler, str):
            check_scheduler_address(scheduler)
        self.backend = backend
        self.n_jobs = n_jobs
        self.max_retries = max_retries
        self.batch = batch
        self.measure_traffic = measure_traffic
        self.last_traffic: dict[str, int] = _traffic()
        self._cluster = None  # LocalCluster we started
        self._client = None  # distributed.Client in use
        self._own_client = False
        self._ray_started = False
        self._parallel: joblib.Parallel | None = None
        self._closed = False
        self._safe_path = False
        try:
            self._start(scheduler)
        except BaseException:
            self.close()
            raise
        self._errors = _lost_worker_errors(backend)

    # -- set-up and tear-down -------------------------------------------------
    def _start(self, scheduler: Any) -> None:
        if self.backend in ("loky", "local-dask"):
            _enter_safe_path()  # helper processes never import from the working directory (L1)
            self._safe_path = True
        if self.backend == "loky":
            self._backend_arg: Any = _safe_loky_backend(initializer=_exit_with_parent, initargs=(os.getpid(),))
        elif self.backend in ("dask", "local-dask"):
            from distributed import Client

            _ClusterOnlyDaskBackend = _cluster_only_dask_backend()

            if self.backend == "local-dask":
                import dask
                from distributed import LocalCluster

                n = (os.cpu_count() or 1) if self.n_jobs == -1 else self.n_jobs
                # no HTTP routes (cluster info, metrics, proxy): its small HTTP servers answer 404 to anyone
                with dask.config.set({"distributed.scheduler.http.routes": [],
                                      "distributed.worker.http.routes": []}):
                    self._cluster = LocalCluster(
                        n_workers=n,
                        threads_per_worker=1,
                        processes=True,
                        security=local_dask_security(),  # mutual TLS, a per-run certificate: no other client (D1)
                        protocol="tls://",
                        host="127.0.0.1",  # scheduler, workers and nannies listen on loopback only
                        dashboard_address=None,  # no dashboard: nothing listens on other interfaces
                        worker_dashboard_address=None,
                        silence_logs=logging.ERROR,
                    )
                self._client = Client(self._cluster, set_as_default=False)
                self._own_client = True
                _LOCAL_CLUSTERS[self._cluster.scheduler_address] = self._cluster.security
            elif isinstance(scheduler, str):
                # this process's own local-dask cluster: its certificate; otherwise dask's configured security
                security = _LOCAL_CLUSTERS.get(scheduler)
                try:
                    self._client = Client(scheduler, set_as_default=False, timeout=DASK_CONNECT_TIMEOUT_S,
                                          **({"security": security} if security is not None else {}))
                except (OSError, TimeoutError) as exc:
                    raise ConnectionError(f"cannot reach the Dask scheduler at {scheduler} within "
                                          f"{DASK_CONNECT_TIMEOUT_S:g} s ({type(exc).__name__}: {exc}); "
                                          "is it running, and is the address right?") from None
                self._own_client = True
            elif isinstance(scheduler, Client):
                self._client = scheduler
            else:
                raise TypeError(
                    f"scheduler must be 'tcp://host:port' or a distributed.Client, got {type(scheduler).__name__}"
                )
            self._backend_arg = _ClusterOnlyDaskBackend(client=self._client)
        else:  # ray
            try:
                import ray
                from ray.util.joblib import register_ray
            except ImportError as exc:
                raise ImportError(
                    "backend 'ray' needs Ray: `pip install ray` (it is not a dependency of dfo)"
                ) from exc
            register_ray()
            if not ray.is_initialized():
                ray.init(num_cpus=None if self.n_jobs == -1 else self.n_jobs, include_dashboard=False,
                         log_to_driver=False)
                self._ray_started = True
            self._backend_arg = "ray"
        self._open_pool()

    def _open_pool(self) -> None:
        n_jobs = -1 if self.backend == "dask" else self.n_jobs
        # Results stream back as chunks finish, so that a worker death loses only
        # the chunks still out. Ray's joblib backend cannot stream: with it a
        # worker death re-runs the whole map call.
        return_as = "list" if self.backend == "ray" else "generator_unordered"
        self._parallel = joblib.Parallel(
            n_jobs=n_jobs, backend=self._backend_arg, batch_size=1, return_as=return_as
        )
        self._parallel.__enter__()

    def _close_pool(self) -> None:
        if self._parallel is not None:
            try:
                self._parallel.__exit__(None, None, None)
            finally:
                self._parallel = None

    def close(self) -> None:
        """Close the joblib pool and any cluster or Ray runtime this evaluator started."""
        if getattr(self, "_closed", True):
            return
        self._closed = True
        self._close_pool()
        if self._own_client and self._client is not None:
            self._client.close()
        if self._cluster is not None:
            _LOCAL_CLUSTERS.pop(getattr(self._cluster, "scheduler_address", None), None)
            self._cluster.close()
        self._client = self._cluster = None
        if self._ray_started:
            import ray

            ray.shutdown()
            self._ray_started = False
        if self._safe_path:
            self._safe_path = False
            _exit_safe_path()

    # -- properties -----------------------------------------------------------
    @property
    def n_workers(self) -> int:  # type: ignore[override]
        """Evaluations that can run at once (for dask: worker threads now in the cluster)."""
        if self._client is not None:
            return max(1, sum(self._client.nthreads().values()))
        if self.backend == "ray":
            import ray

            return max(1, int(ray.cluster_resources().get("CPU", 1))) if self.n_jobs == -1 else self.n_jobs
        return joblib.effective_n_jobs(self.n_jobs)

    @property
    def client(self):
        """The ``distributed.Client`` of a dask evaluator (None otherwise)."""
        return self._client

    def _n_chunks(self, n_items: int) -> int:
        if self.batch == "auto":
            return AUTO_CHUNKS_PER_WORKER * self.n_workers
        return math.ceil(n_items / self.batch)

    # -- the work -------------------------------------------------------------
    def map(self, fn: Callable[[Any, Any], T], items: Sequence[Any], shared: Any = None) -> list[T]:
        """Return ``[fn(shared, item) for item in items]``, evaluated in parallel chunks.

        Raises:
            RuntimeError: the evaluator is closed.
            Exception: whatever ``fn`` raised (not retried), or the lost-worker
                error once ``max_retries`` re-runs have failed too.
        """
        if self._closed or self._parallel is None:
            raise RuntimeError("this evaluator is closed; create a new one")
        items = list(items)
        bounds = chunk_bounds(len(items), self._n_chunks(len(items)))
        base = payload_bytes((fn, shared)) if self.measure_traffic and bounds else 0
        traffic = _traffic(items=len(items))
        results: dict[int, list[T]] = {}
        attempt = 0
        while len(results) < len(bounds):
            pending = [i for i in range(len(bounds)) if i not in results]
            tasks = [joblib.delayed(_run_chunk)(fn, shared, i, items[slice(*bounds[i])]) for i in pending]
            if self.measure_traffic:
                traffic["sent"] += sum(base + payload_bytes(items[slice(*bounds[i])]) for i in pending)
            traffic["chunks"] += len(pending)
            try:
                for index, chunk_result in self._parallel(tasks):
                    results[index] = chunk_result
                    if self.measure_traffic:
                        traffic["received"] += payload_bytes(chunk_result)
            except self._errors as exc:
                attempt += 1
                lost = len(bounds) - len(results)
                if attempt > self.max_retries:
                    log.error("%s: worker lost again after %d retries; giving up", self.backend, self.max_retries)
                    raise
                log.warning(
                    "%s: a worker died (%s: %s); re-running %d lost chunk(s) of %d (retry %d/%d)",
                    self.backend, type(exc).__name__, exc, lost, len(bounds), attempt, self.max_retries,
                )
                traffic["retries"] += 1
                self._close_pool()  # a broken pool is not reused
                self._open_pool()
        self.last_traffic = traffic
        return [r for i in range(len(bounds)) for r in results[i]]

    def __repr__(self) -> str:
        return f"JoblibEvaluator(n_jobs={self.n_jobs}, backend={self.backend!r}, batch={self.batch!r})"


def make_evaluator(spec: None | int | str | Evaluator = None, **kw: Any) -> Evaluator:
    """Build an evaluator from a short spec.

    Args:
        spec: ``None``, ``1`` or ``"serial"``: :class:`SerialEvaluator`.
            An int ``n > 1`` or ``-1``: loky with ``n`` jobs (``-1`` = all cores).
            ``"loky"``, ``"dask"``, ``"local-dask"``, ``"ray"``: :class:`JoblibEvaluator`
            with that backend (``"dask"`` needs ``scheduler=``). An object with a
            ``map`` method and ``n_workers`` is returned unchanged.
        **kw: passed to :class:`JoblibEvaluator` (``n_jobs``, ``scheduler``,
            ``max_retries``, ``batch``, ``measure_traffic``).

    Example:
        >>> make_evaluator(None)
        SerialEvaluator()
        >>> make_evaluator("local-dusk")
        Traceback (most recent call last):
        ...
        ValueError: unknown evaluator 'local-dusk'; valid: 'serial', 'loky', 'dask', 'local-dask', 'ray', an int n_jobs, or an Evaluator
    """
    if spec is None or spec == 1 or spec == "serial":
        if isinstance(spec, bool):
            raise TypeError("evaluator spec must be None, an int, a backend name or an Evaluator, not a bool")
        if kw:
            raise TypeError(f"the serial evaluator takes no options, got {sorted(kw)}")
        return SerialEvaluator()
    if isinstance(spec, bool):
        raise TypeError("evaluator spec must be None, an int, a backend name or an Evaluator, not a bool")
    if isinstance(spec, int):
        if "n_jobs" in kw:
            raise TypeError("give n_jobs either as the spec or as a keyword, not both")
        return JoblibEvaluator(n_jobs=spec, backend="loky", **kw)
    if isinstance(spec, str):
        if spec not in BACKENDS:
            valid = ", ".join(repr(b) for b in BACKENDS)
            raise ValueError(f"unknown evaluator {spec!r}; valid: {valid}, an int n_jobs, or an Evaluator")
        return JoblibEvaluator(backend=spec, **kw)
    if isinstance(spec, Evaluator):
        if kw:
            raise TypeError(f"options {sorted(kw)} cannot be applied to an existing evaluator")
        return spec
    raise TypeError(
        f"evaluator spec must be None, an int, a backend name or an Evaluator, not {type(spec).__name__}"
    )
