"""NUTS chains on several cores: worker processes that each run some of the chains.

JAX runs the compiled NUTS program of :class:`.nuts._BlockProgram` on the calling thread (XLA's CPU
thread pool is limited to it, :data:`.jax_model.XLA_CPU_FLAGS`), and two such programs on two
threads of one process hang in JAX 0.10's CPU runtime (``benchmarks/README.md``). So the other
cores run other *processes* (:func:`iaemu_likelihood.sampling.chain_workers.main`), one per extra
core, each holding a share of the chains. The chains are independent (each adapts its own step
size and mass matrix), and every chain gets the random key and start it would get in one process,
so the draws are the same whatever the number of processes (tested).

A worker rebuilds the posterior from the Cobaya input blocks (checked against the caller's
fingerprint and its log-posterior at three points), builds the same compiled program for its
chains and keeps their state between blocks; after every block it sends back the draws, and the
state for the caller's checkpoint. A worker that fails is stopped and its chains go on in the
caller's process from their last state (:class:`ParallelChains`), with the same draws.

Messages are length-prefixed ``.npz`` archives over the worker's stdin and stdout: numeric arrays
and one JSON string, read with ``allow_pickle=False`` (nothing is unpickled). The worker's own
stdout (Cobaya's and the libraries' prints) goes to its stderr, which is the caller's.
"""
from __future__ import annotations

import io
import json
import logging
import os
import struct
import subprocess
import sys
import zipfile
from operator import methodcaller
from pathlib import Path

import numpy as np

from ..errors import IAEmuError

__all__ = ["WorkerError", "available_cores", "split_chains", "LocalChains", "ParallelChains",
           "default_processes", "spawn_processes", "spawn_for", "stop_processes",
           "start_workers"]

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<Q")
_META = "meta"
#: Largest message accepted (bytes): a block's draws and states are a few kB.
MAX_MESSAGE_BYTES = 1 << 30


class WorkerError(IAEmuError, RuntimeError):
    """A chain worker process failed or ended early."""


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def default_processes(n_chains: int, processes: int | None = None) -> int:
    """Processes for ``n_chains`` chains: ``processes`` if given (checked), else one per
    available core, at most one per chain."""
    if processes is None:
        processes = available_cores()
    if int(processes) != processes or processes < 1:
        raise ValueError(f"processes = {processes!r} must be a positive integer")
    return int(min(processes, max(int(n_chains), 1)))


def split_chains(n_chains: int, processes: int) -> list[slice]:
    """Contiguous shares of ``n_chains`` chains for ``processes`` processes (the first is the
    caller's), as even as possible; never an empty share."""
    processes = max(1, min(int(processes), int(n_chains)))
    bounds = np.linspace(0, n_chains, processes + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


# ---------------------------------------------------------------------------------- messages
def write_message(stream, kind: str, meta: dict | None = None, **arrays) -> None:
    """Send one message: ``kind``, JSON-serialisable ``meta`` and numeric ``arrays``."""
    buffer = io.BytesIO()
    np.savez(buffer, **{_META: np.array(json.dumps({"kind": kind, **(meta or {})}))},
             **{k: np.asarray(v) for k, v in arrays.items()})
    data = buffer.getvalue()
    stream.write(_HEADER.pack(len(data)))
    stream.write(data)
    stream.flush()


def read_message(stream, source: str) -> tuple[str, dict, dict]:
    """Receive one message: ``(kind, meta, arrays)``.

    Raises
    ------
    WorkerError
        The stream ended (the other side exited) or the message is malformed.
    """
    head = stream.read(_HEADER.size)
    if len(head) < _HEADER.size:
        raise WorkerError(f"{source} ended without an answer (see the messages above)")
    (size,) = _HEADER.unpack(head)
    if size > MAX_MESSAGE_BYTES:
        raise WorkerError(f"{source} sent a message of {size} bytes (at most "
                          f"{MAX_MESSAGE_BYTES} allowed)")
    data = stream.read(size)
    if len(data) < size:
        raise WorkerError(f"{source} ended in the middle of a message")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
        meta = json.loads(str(arrays.pop(_META)))
        kind = meta.pop("kind")
    except (OSError, ValueError, KeyError, TypeError, AttributeError,
            zipfile.BadZipFile) as exc:
        raise WorkerError(f"{source} sent an unreadable message ({exc})") from None
    return kind, meta, arrays


def _leaf_arrays(leaves) -> dict:
    return {f"leaf{i}": leaf for i, leaf in enumerate(leaves)}


def _from_leaf_arrays(arrays) -> list[np.ndarray]:
    return [arrays[f"leaf{i}"] for i in range(sum(k.startswith("leaf") for k in arrays))]


# ---------------------------------------------------------------------------------- caller side
class LocalChains:
    """Chains run in this process, one after another, each by the same one-chain
    :class:`.nuts._BlockProgram` (the whole run when there is one process, the first share
    otherwise)."""

    def __init__(self, program):
        self.program = program
        self.states = []

    def start(self, keys, w0, cov) -> None:
        """Start the chains from keys (n, 2), points (n, d) and an initial inverse mass matrix
        (d, d) for all."""
        import jax

        cov = jax.numpy.asarray(cov)
        self.states = [self.program.init(k, w, cov)
                       for k, w in zip(jax.numpy.asarray(keys), jax.numpy.asarray(w0))]

    def restore(self, leaves) -> None:
        """Continue from the leaves of these chains' state, stacked along a leading chain axis
        (in the order of the program's ``state_structure``)."""
        import jax

        self.states = [jax.tree_util.tree_unflatten(
            self.program.state_structure, [jax.numpy.asarray(x[c]) for x in leaves])
            for c in range(len(leaves[0]))]

    @property
    def step_index(self) -> int:
        """Steps taken so far by every chain (warm-up included)."""
        return int(np.asarray(self.states[0].i))

    @property
    def leaves(self) -> list[np.ndarray]:
        """The leaves of these chains' states, stacked along a leading chain axis (numpy)."""
        import jax

        return [np.stack([np.asarray(x) for x in parts])
                for parts in zip(*(jax.tree_util.tree_leaves(s) for s in self.states))]

    def advance(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One block of every chain: draws (chains, block, d), tree sizes and divergences."""
        if not self.states:
            raise RuntimeError("no chain was started or restored here")
        parts = []
        for c, state in enumerate(self.states):
            self.states[c], out = self.program.run_block(state)
            parts.append([np.asarray(o) for o in out])
        return tuple(np.stack(p) for p in zip(*parts))


class _Worker:
    """One worker process and its share of the chains."""

    def __init__(self, process, share: slice):
        self.process, self.share = process, share
        self.name = f"NUTS chain worker (pid {process.pid}, chains {share.start}-{share.stop - 1})"

    def send(self, kind, meta=None, **arrays):
        try:
            write_message(self.process.stdin, kind, meta, **arrays)
        except (BrokenPipeError, OSError):
            raise self._ended() from None

    def receive(self, expected: str):
        try:
            kind, meta, arrays = read_message(self.process.stdout, self.name)
        except WorkerError:
            # the stream ends before the process is seen to exit: wait for it a little
            try:
                self.process.wait(1.0)
            except subprocess.TimeoutExpired:  # alive, but what it sent cannot be read
                raise
            raise self._ended() from None
        if kind == "error":
            raise WorkerError(f"{self.name} failed: {meta.get('message')}")
        if kind != expected:
            raise WorkerError(f"{self.name} answered {kind!r} instead of {expected!r}")
        return meta, arrays

    def _ended(self, timeout: float = 5.0) -> WorkerError:
        """The error of a worker whose pipe broke or ended: its own one-line error if it sent
        one before it exited, else how it exited."""
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return WorkerError(f"{self.name} stopped answering")
        try:
            kind, meta, _ = read_message(self.process.stdout, self.name)
            if kind == "error":
                return WorkerError(f"{self.name} failed: {meta.get('message')}")
        except (WorkerError, OSError, ValueError):
            pass
        code = self.process.returncode
        how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        return WorkerError(f"{self.name} {how} without an answer")

    def request_stop(self) -> None:
        """Ask the worker to end and stop reading its answers (a worker blocked writing one
        then fails at once instead of waiting for a reader)."""
        if self.process.poll() is None:
            try:
                write_message(self.process.stdin, "stop")
            except (BrokenPipeError, OSError):
                pass
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass

    def close(self, timeout: float = 10.0):
        """Stop the worker: ask, wait up to ``timeout`` s, then kill."""
        stop_processes([self.process], timeout)


#: What a worker process runs. ``python -c`` (and ``-m``) put the working directory first on
#: ``sys.path``: from a source checkout that holds an ``iaemu_likelihood`` folder, the worker would
#: import that folder instead of the installed package the caller runs (whose weights live
#: elsewhere). So that entry is dropped; the caller's package is found where it was found
#: (site-packages, PYTHONPATH, or the source tree added by :func:`spawn_processes`).
_BOOTSTRAP = ("import os, sys\n"
              "if sys.path and sys.path[0] in ('', os.getcwd()):\n"
              "    del sys.path[0]\n"
              "from iaemu_likelihood.sampling.chain_workers import main\n"
              "sys.exit(main())\n")


def _site_folders() -> set:
    """The folders Python itself puts on ``sys.path`` for installed packages."""
    import site

    folders = set(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        folders.add(site.getusersitepackages())
    return {str(Path(f).resolve()) for f in folders}


def spawn_processes(count: int) -> list:
    """Start ``count`` worker processes. Each imports what it needs (JAX, NumPyro, Cobaya: ~1.5 s)
    at once and then waits for its posterior (:func:`start_workers`), so a caller that spawns them
    before building its own posterior does not wait for them later.

    Returns
    -------
    list of subprocess.Popen
    """
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
    if package_root not in _site_folders():  # a source tree: the workers must import this one
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env.setdefault("OMP_NUM_THREADS", "1")
    processes = []
    try:
        for _ in range(int(count)):
            processes.append(subprocess.Popen([sys.executable, "-c", _BOOTSTRAP],
                                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                              env=env))
    except BaseException:
        stop_processes(processes)
        raise
    return processes


def spawn_for(n_chains: int, processes: int | None = None) -> list:
    """:func:`spawn_processes` for the workers a run of ``n_chains`` chains on ``processes``
    processes (:func:`default_processes`) will use."""
    shares = split_chains(n_chains, default_processes(n_chains, processes))
    return spawn_processes(len(shares) - 1)


def stop_processes(processes, timeout: float = 10.0) -> None:
    """Stop worker processes (spawned, or serving a run): ask them all, then wait for them
    together, up to ``timeout`` s in all, and kill those still running."""
    import time

    for process in processes:
        _Worker(process, slice(0, 1)).request_stop()
    deadline = time.monotonic() + timeout
    for process in processes:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _probe_points(posterior) -> np.ndarray:
    """Three points inside the support (its centre and two others) whose log-posteriors a
    worker's posterior must reproduce."""
    z = np.outer([0.0, 0.5, -0.5], np.ones(posterior.dim))
    z[1, ::2] = -0.5  # not on the diagonal of the unconstrained space
    return posterior.support.to_theta(z)


def start_workers(posterior, n_chains: int, processes: int, spawned=None) -> list:
    """Give every share of the chains but the first (the caller's) to a worker process, which
    rebuilds the posterior at once, while the caller looks for the starting point.

    Parameters
    ----------
    posterior : Posterior
    n_chains, processes : int
        Chains, shared among at most ``processes`` processes (:func:`split_chains`).
    spawned : list of subprocess.Popen, optional
        Processes from :func:`spawn_processes` to use first (those not needed are stopped);
        more are started if they are too few.

    Returns
    -------
    list of _Worker
        Empty when ``processes`` is 1 (or there is one chain).
    """
    from .checkpoint import posterior_blocks, posterior_fingerprint

    shares = split_chains(n_chains, processes)
    spawned = list(spawned or [])
    stop_processes(spawned[len(shares) - 1:])
    spawned = spawned[:len(shares) - 1]
    if len(shares) == 1:
        return []
    meta = {"info": posterior_blocks(posterior.info), "fingerprint": posterior_fingerprint(posterior)}
    # the worker must rebuild the same posterior, not only from the same blocks (relative paths
    # and the files they name could differ by now): it checks these values too
    probe = _probe_points(posterior)
    probe_logpost = posterior.logpost_batch(probe)
    workers = []
    try:
        spawned += spawn_processes(len(shares) - 1 - len(spawned))
        workers = [_Worker(process, share) for process, share in zip(spawned, shares[1:])]
        for worker in workers:
            worker.send("posterior", meta, probe=probe, probe_logpost=probe_logpost)
    except BaseException:
        stop_processes(spawned)
        raise
    log.info("NUTS: %d chains on %d processes (%s)", n_chains, len(shares),
             ", ".join(f"{s.stop - s.start}" for s in shares))
    return workers


class _RemoteShare:
    """A share of the chains in a worker process: requests sent, answers collected later."""

    def __init__(self, worker: _Worker):
        self.worker, self.share = worker, worker.share
        self.leaves = None  # the state after the last answered request

    def send(self, kind, meta=None, **arrays):
        self.worker.send(kind, meta, **arrays)

    def start(self, keys, w0, cov):
        self.send("start", keys=keys[self.share], w0=w0[self.share], cov=cov)

    def restore(self, leaves):
        self.send("restore", **_leaf_arrays([x[self.share] for x in leaves]))

    def submit(self):
        self.send("block")

    def finish(self):
        """The answer to ``start``/``restore`` (the state)."""
        self.leaves = _from_leaf_arrays(self.worker.receive("state")[1])

    def collect(self):
        """The answer to a block: draws, tree sizes, divergences."""
        _, arrays = self.worker.receive("block")
        self.leaves = _from_leaf_arrays(arrays)
        return arrays["draws"], arrays["steps"], arrays["diverging"]


class _LocalShare:
    """A share of the chains in this process (:class:`LocalChains`)."""

    def __init__(self, program, share: slice):
        self.chains, self.share = LocalChains(program), share

    def start(self, keys, w0, cov):
        self.chains.start(keys[self.share], w0[self.share], cov)

    def restore(self, leaves):
        self.chains.restore([x[self.share] for x in leaves])

    def submit(self):
        pass

    def finish(self):
        pass

    def collect(self):
        return self.chains.advance()

    @property
    def leaves(self):
        return self.chains.leaves


_finish, _submit, _collect = (methodcaller(name) for name in ("finish", "submit", "collect"))


class ParallelChains:
    """All chains: the first share in this process, the others in worker processes
    (:func:`start_workers`), advanced together block by block.

    A worker that fails (it cannot rebuild the posterior, crashes, is killed) is stopped and its
    chains go on in this process from their last state, with a warning naming its error: every
    chain runs the same compiled program wherever it runs, so the draws are the same.

    Parameters
    ----------
    program : nuts._BlockProgram
        This process's compiled program (one chain).
    workers : list of _Worker
    n_chains : int
    program_meta : dict
        What a worker needs to build the same program: ``shear`` (dict or None),
        ``n_warmup``, ``block``, ``target_accept``.
    """

    def __init__(self, program, workers, n_chains: int, program_meta: dict):
        self.program = program
        first = slice(0, workers[0].share.start if workers else n_chains)
        self.shares = [_LocalShare(program, first)] + [_RemoteShare(w) for w in workers]
        #: the errors of workers whose chains moved to this process
        self.failures = []
        for i in range(1, len(self.shares)):
            self._guard(i, lambda s: s.send("program", program_meta))

    @property
    def local(self) -> LocalChains:
        """The chains of the first share (this process's own)."""
        return self.shares[0].chains

    def _guard(self, i, action):
        """``(True, action(share))``, or ``(False, None)`` when the share's worker failed: the
        worker is stopped and its share moves to this process (restored to its last answered
        state, if it has one; the caller starts or restores it otherwise)."""
        share = self.shares[i]
        try:
            return True, action(share)
        except WorkerError as exc:
            if not isinstance(share, _RemoteShare):
                raise
            log.warning("%s; its chains continue in this process (the same draws)", exc)
            self.failures.append(str(exc))
            stop_processes([share.worker.process])
            local = _LocalShare(self.program, share.share)
            if share.leaves is not None:  # the worker's own chains' state (first axis: its chains)
                local.chains.restore(share.leaves)
            self.shares[i] = local
            return False, None

    def start(self, keys, w0, cov) -> None:
        """Start every chain: keys (n_chains, 2), points (n_chains, d), the initial inverse mass
        matrix (d, d)."""
        keys, w0, cov = np.asarray(keys), np.asarray(w0), np.asarray(cov)
        self._each(lambda s: s.start(keys, w0, cov))

    def restore(self, state) -> None:
        """Continue from a saved state of all chains (leading axis: chain)."""
        import jax

        leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(state)]
        self._each(lambda s: s.restore(leaves))

    def _each(self, request):
        """``request`` (start or restore) to every share: the workers' are sent first, this
        process's done meanwhile, then the workers' answers collected; a share whose worker
        failed is done here."""
        moved = [i for i in range(len(self.shares)) if not self._guard(i, request)[0]]
        for i in range(1, len(self.shares)):
            if isinstance(self.shares[i], _RemoteShare) and not self._guard(i, _finish)[0]:
                moved.append(i)
        for i in moved:
            request(self.shares[i])

    def advance(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One block of every chain (workers and this process side by side): draws
        (chains, block, d), tree sizes (chains, block) and divergences (chains, block)."""
        for i in range(1, len(self.shares)):
            self._guard(i, _submit)
        parts = []
        for i in range(len(self.shares)):
            ok, out = self._guard(i, _collect)
            # a worker that failed: the block again here, from the state before it
            parts.append(out if ok else self.shares[i].collect())
        return tuple(np.concatenate(p, axis=0) for p in zip(*parts))

    @property
    def workers(self) -> list:
        """The workers still running a share."""
        return [s.worker for s in self.shares if isinstance(s, _RemoteShare)]

    @property
    def state(self):
        """The state of all chains, numpy arrays stacked along a leading chain axis (for
        saving)."""
        import jax

        per_share = [s.leaves for s in self.shares]
        stacked = [np.concatenate(parts) for parts in zip(*per_share)]
        return jax.tree_util.tree_unflatten(self.program.state_structure, stacked)


# ---------------------------------------------------------------------------------- worker side
def _serve(inp, out) -> None:
    """A worker's life: posterior, program, then start/restore and blocks until ``stop``."""
    from .checkpoint import posterior_fingerprint
    from .jax_model import UnconstrainedModel
    from .jax_model import jax as jax_and_numpy
    from .nuts import _BlockProgram
    from .posterior import load_posterior
    from .shear import UnconstrainedShear

    jax_and_numpy()  # first: sets XLA's flags and the compilation cache
    import cobaya.model  # noqa: F401 - imported while the caller builds its posterior
    import numpyro.infer.hmc  # noqa: F401

    source = "the sampling process"
    kind, meta, probe = read_message(inp, source)
    # warnings and errors only (Cobaya resets the levels of its loggers): the sampling process
    # logs the run
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s NUTS worker %(process)d: %(message)s")
    logging.disable(logging.INFO)
    posterior = load_posterior(meta["info"])
    if posterior_fingerprint(posterior) != meta["fingerprint"]:
        raise WorkerError("the posterior rebuilt from the input blocks differs from the "
                          "sampling process's")
    own = posterior.logpost_batch(probe["probe"])
    if not np.allclose(own, probe["probe_logpost"], rtol=1e-10, atol=0.0, equal_nan=True):
        raise WorkerError(f"the posterior rebuilt from the input blocks gives log-posteriors "
                          f"{own.tolist()} at the check points, the sampling process's "
                          f"{probe['probe_logpost'].tolist()} (a data or weights file changed or "
                          "moved since the posterior was built?)")
    model = UnconstrainedModel(posterior)
    kind, meta, _ = read_message(inp, source)
    shear = None if meta["shear"] is None else UnconstrainedShear(
        meta["shear"]["pivot"], meta["shear"]["sigma"], meta["shear"]["coefficients"])
    program = _BlockProgram(model.potential_for(shear), posterior.dim, meta["n_warmup"],
                            meta["block"], meta["target_accept"])
    # the step program first, while the sampling process compiles the start ("init"): each then
    # finds the other's in JAX's persistent cache (two compilations at once on two cores slowed
    # each other, XLA's compiler using several threads)
    program.compile_block()
    chains = LocalChains(program)
    while True:
        kind, meta, arrays = read_message(inp, source)
        if kind == "stop":
            return
        if kind == "start":
            chains.start(arrays["keys"], arrays["w0"], arrays["cov"])
        elif kind == "restore":
            chains.restore(_from_leaf_arrays(arrays))
        elif kind == "block":
            draws, steps, diverging = chains.advance()
            write_message(out, "block", None, draws=draws, steps=steps, diverging=diverging,
                          **_leaf_arrays(chains.leaves))
            continue
        else:
            raise WorkerError(f"unknown request {kind!r}")
        write_message(out, "state", None, **_leaf_arrays(chains.leaves))


def main() -> int:
    """Entry point of a worker process (started by :func:`spawn_processes`; also
    ``python -m iaemu_likelihood.sampling.chain_workers``)."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed goes to stderr, not into the message stream
    sys.stdout = sys.stderr
    try:
        _serve(sys.stdin.buffer, out)
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group: the caller reports it
        return 130
    except BrokenPipeError:  # the caller closed its end: it stopped this worker or is gone
        return 1
    except Exception as exc:  # noqa: BLE001 - reported to the caller as one line
        message = str(exc) if isinstance(exc, WorkerError) else \
            f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        sys.stderr.write(f"NUTS chain worker {os.getpid()}: {message}\n")
        try:
            write_message(out, "error", {"message": message})
        except OSError:  # the caller went away
            pass
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
