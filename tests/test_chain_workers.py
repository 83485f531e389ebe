"""NUTS chain workers (iaemu_likelihood.sampling.chain_workers): how chains are shared, the
message format (numbers and JSON only, nothing unpickled) and one-line errors from a worker.

That the draws do not depend on the number of processes is tested with the samplers
(test_sampling.py::test_nuts_is_reproducible, test_sampling_resume.py)."""
import io

import numpy as np
import pytest

from iaemu_likelihood.sampling import chain_workers as cw

from test_sampling import synthetic  # noqa: F401  (the synthetic posterior fixture)


@pytest.mark.parametrize("n_chains, processes, sizes", [
    (4, 2, [2, 2]), (3, 2, [2, 1]), (4, 1, [4]), (1, 4, [1]), (5, 8, [1] * 5), (7, 3, [2, 3, 2])])
def test_split_chains_covers_every_chain_once(n_chains, processes, sizes):
    shares = cw.split_chains(n_chains, processes)
    assert [s.stop - s.start for s in shares] == sizes
    assert shares[0].start == 0 and shares[-1].stop == n_chains
    assert all(a.stop == b.start for a, b in zip(shares[:-1], shares[1:]))


def test_messages_round_trip():
    stream = io.BytesIO()
    cw.write_message(stream, "block", {"n": 3, "name": "x"}, draws=np.arange(6.0).reshape(2, 3),
                     keys=np.array([[1, 2]], dtype=np.uint32))
    cw.write_message(stream, "stop")
    stream.seek(0)
    kind, meta, arrays = cw.read_message(stream, "test")
    assert kind == "block" and meta == {"n": 3, "name": "x"}
    np.testing.assert_array_equal(arrays["draws"], np.arange(6.0).reshape(2, 3))
    assert arrays["keys"].dtype == np.uint32
    assert cw.read_message(stream, "test")[0] == "stop"
    with pytest.raises(cw.WorkerError, match="test ended without an answer"):
        cw.read_message(stream, "test")


def test_bad_messages_are_refused_by_name():
    # an object array would need unpickling: refused, not loaded
    payload = io.BytesIO()
    np.savez(payload, meta=np.array('{"kind": "block"}'), x=np.array([{"a": 1}], dtype=object))
    data = payload.getvalue()
    stream = io.BytesIO(cw._HEADER.pack(len(data)) + data)
    with pytest.raises(cw.WorkerError, match="worker sent an unreadable message"):
        cw.read_message(stream, "worker")
    with pytest.raises(cw.WorkerError, match="ended in the middle of a message"):
        cw.read_message(io.BytesIO(cw._HEADER.pack(100) + b"short"), "worker")
    with pytest.raises(cw.WorkerError, match="sent a message of .* bytes"):
        cw.read_message(io.BytesIO(cw._HEADER.pack(cw.MAX_MESSAGE_BYTES + 1)), "worker")


def test_a_worker_reports_its_failure_in_one_line(tmp_path, monkeypatch):
    # started from a folder holding another ``iaemu_likelihood`` (as the root of a source checkout
    # does), the worker still imports the caller's package, not that folder
    shadow = tmp_path / "iaemu_likelihood"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ImportError('the shadowing folder was imported')\n")
    monkeypatch.chdir(tmp_path)
    [process] = cw.spawn_processes(1)
    worker = cw._Worker(process, slice(1, 2))
    try:
        worker.send("posterior", {"info": {"likelihood": {"nonexistent_likelihood": None}},
                                  "fingerprint": "0" * 64})
        with pytest.raises(cw.WorkerError) as err:
            worker.receive("state")
        message = str(err.value)
        assert message.startswith(f"NUTS chain worker (pid {process.pid}, chains 1-1) failed: ")
        assert "\n" not in message
    finally:
        worker.close()
    assert process.returncode == 1


def test_run_nuts_refuses_a_bad_process_count():
    from iaemu_likelihood.sampling.nuts import run_nuts

    with pytest.raises(ValueError, match="processes = 0 must be a positive integer"):
        run_nuts(None, processes=0)


def test_a_worker_refuses_a_posterior_whose_files_changed(synthetic, tmp_path):  # noqa: F811
    """Same input blocks, other data behind the same path: the worker's check points differ."""
    import shutil

    from iaemu_likelihood.sampling.posterior import load_posterior

    _, _, info = synthetic
    data = tmp_path / "m.npz"
    shutil.copy(info["likelihood"][next(iter(info["likelihood"]))]["data_file"], data)
    mine = {**info, "likelihood": {k: {**v, "data_file": str(data)}
                                   for k, v in info["likelihood"].items()}}
    post = load_posterior(mine)
    # the caller's dict is not the posterior's: changing it afterwards changes nothing
    mine["likelihood"][next(iter(mine["likelihood"]))]["r_min"] = 5.0
    assert post.info["likelihood"] != mine["likelihood"]
    with np.load(data, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    arrays["eta"] = arrays["eta"] * 1.5
    np.savez(data, **arrays)
    workers = cw.start_workers(post, n_chains=2, processes=2)
    try:
        with pytest.raises(cw.WorkerError, match=r"failed: the posterior rebuilt from the input "
                                                 r"blocks gives log-posteriors .* changed or moved"):
            workers[0].receive("state")
    finally:
        cw.stop_processes([w.process for w in workers])


def test_a_worker_that_failed_earlier_is_reported_with_its_own_error(tmp_path):
    """The worker exits with its error while the caller is busy; the caller's next send still
    reports that error, not a broken pipe."""
    [process] = cw.spawn_processes(1)
    worker = cw._Worker(process, slice(1, 2))
    try:
        worker.send("posterior", {"info": {"likelihood": {"nonexistent_likelihood": None}},
                                  "fingerprint": "0" * 64})
        process.wait(60)  # it has failed and gone while the caller looked for a start
        with pytest.raises(cw.WorkerError, match=r"chains 1-1\) failed: "):
            worker.send("program", {"shear": None, "n_warmup": 1, "block": 1,
                                    "target_accept": 0.7})
            worker.receive("state")
    finally:
        worker.close()
    # a worker killed by a signal is named as such
    [process] = cw.spawn_processes(1)
    worker = cw._Worker(process, slice(1, 2))
    process.kill()
    process.wait()
    with pytest.raises(cw.WorkerError, match=r"was killed by signal 9 without an answer"):
        worker.receive("state")
    worker.close()


@pytest.mark.parametrize("n_chains", [0, 2.0, True])
def test_run_nuts_refuses_a_bad_chain_count(n_chains):
    from iaemu_likelihood.sampling.nuts import run_nuts

    with pytest.raises(ValueError, match=r"n_chains = .* must be a positive integer"):
        run_nuts(None, n_chains=n_chains)


def test_a_failed_worker_s_chains_go_on_here_with_the_same_draws(synthetic, caplog):  # noqa: F811
    """A worker killed in the middle of the run: its chains continue in this process from their
    last state and the chains are those of a run in one process; so are those of a run whose
    worker refuses the posterior at once."""
    from iaemu_likelihood.sampling.jax_model import UnconstrainedModel
    from iaemu_likelihood.sampling.nuts import run_nuts

    post = synthetic[0]
    model = UnconstrainedModel(post)
    opts = dict(seed=4, n_chains=2, n_warmup=10, block=10, min_ess=1e9, max_samples=30,
                progress=False, model=model)
    alone = run_nuts(post, processes=1, **opts)

    real = cw.ParallelChains.advance
    calls = []

    def advance_then_kill(self):
        calls.append(1)
        if len(calls) == 3:  # after the warm-up and one block of draws
            self.workers[0].process.kill()
        return real(self)

    cw.ParallelChains.advance = advance_then_kill
    try:
        killed = run_nuts(post, processes=2, **opts)
    finally:
        cw.ParallelChains.advance = real
    assert len(killed.info["worker_failures"]) == 1
    assert "killed by signal 9" in killed.info["worker_failures"][0]
    assert "its chains continue in this process" in caplog.text
    for a, b in zip(alone.chains, killed.chains):
        np.testing.assert_array_equal(a, b)

    real_start = cw.start_workers

    def refused(posterior, n_chains, processes, spawned=None):
        workers = real_start(posterior, n_chains, processes, spawned)
        for worker in workers:  # a worker that cannot rebuild the posterior
            worker.process.kill()
        return workers

    cw.start_workers = refused
    try:
        early = run_nuts(post, processes=2, **opts)
    finally:
        cw.start_workers = real_start
    assert len(early.info["worker_failures"]) == 1
    for a, b in zip(alone.chains, early.chains):
        np.testing.assert_array_equal(a, b)
