"""iaemu sample --resume: an interrupted run continued from its saved state ends with the chain
of the uninterrupted run (same seed and options), and bad resumes are refused by name."""
import numpy as np
import pytest
import yaml

from iaemu_likelihood.sampling import checkpoint
from iaemu_likelihood.sampling.checkpoint import ResumeError, state_path

from test_sampling import synthetic  # noqa: F401  (the synthetic posterior fixture)


class Interrupted(Exception):
    """Stands in for a kill between two blocks."""


def interrupt_after(monkeypatch, n_saves):
    """Let the sampler save its state ``n_saves`` times, then stop it as a kill would."""
    real = checkpoint.save_state
    calls = []

    def save_then_stop(*args, **kwargs):
        real(*args, **kwargs)
        calls.append(1)
        if len(calls) == n_saves:
            raise Interrupted

    monkeypatch.setattr(checkpoint, "save_state", save_then_stop)
    return lambda: monkeypatch.setattr(checkpoint, "save_state", real)


def test_ensemble_resume_equals_uninterrupted(synthetic, tmp_path, monkeypatch):  # noqa: F811
    from iaemu_likelihood.sampling.defaults import ENSEMBLE_CHECK_EVERY as CHECK_EVERY
    from iaemu_likelihood.sampling.ensemble import run_ensemble

    post = synthetic[0]
    opts = dict(seed=6, n_walkers=12, min_ess=1e9, max_steps=3 * CHECK_EVERY, progress=False)
    whole = run_ensemble(post, state_file=tmp_path / "a.state.npz", **opts)
    path = tmp_path / "b.state.npz"
    restore = interrupt_after(monkeypatch, 2)
    with pytest.raises(Interrupted):
        run_ensemble(post, state_file=path, **opts)
    restore()
    resumed = run_ensemble(post, state_file=path, resume=True, **opts)
    assert resumed.info["resumed_at_step"] == 2 * CHECK_EVERY
    np.testing.assert_array_equal(resumed.chains[0], whole.chains[0])
    np.testing.assert_array_equal(resumed.logpost[0], whole.logpost[0])
    assert resumed.ess == whole.ess
    assert resumed.info["acceptance_fraction"] == whole.info["acceptance_fraction"]
    assert resumed.info["evaluations"] == whole.info["evaluations"]
    # another seed or walker count is another run: refused, naming what differs
    with pytest.raises(ResumeError, match=r"its seed is 6, this run's is 7"):
        run_ensemble(post, state_file=path, resume=True, **{**opts, "seed": 7})
    with pytest.raises(ResumeError, match=r"its walkers is 12, this run's is 14"):
        run_ensemble(post, state_file=path, resume=True, **{**opts, "n_walkers": 14})


def test_nuts_resume_equals_uninterrupted(synthetic, tmp_path, monkeypatch):  # noqa: F811
    from iaemu_likelihood.sampling.jax_model import UnconstrainedModel
    from iaemu_likelihood.sampling.nuts import run_nuts

    post = synthetic[0]
    opts = dict(seed=3, n_chains=2, n_warmup=10, min_ess=1e9, max_samples=30, block=10,
                progress=False)
    whole = run_nuts(post, state_file=tmp_path / "a.state.npz", model=UnconstrainedModel(post),
                     processes=1, **opts)
    path = tmp_path / "b.state.npz"
    restore = interrupt_after(monkeypatch, 2)      # saves: after the warm-up, after block 1
    with pytest.raises(Interrupted):
        run_nuts(post, state_file=path, processes=2, **opts)
    restore()
    # a fresh model and sampler, as in a new process, the second chain in a worker process that
    # restores its share of the saved state; with the progress bar (iaemu's, per block)
    resumed = run_nuts(post, state_file=path, resume=True, processes=2,
                       **{**opts, "progress": True})
    assert resumed.info["resumed_at_samples_per_chain"] == 10 and resumed.info["processes"] == 2
    for a, b in zip(resumed.chains, whole.chains):
        np.testing.assert_array_equal(a, b)
    assert resumed.info["gradient_evaluations"] == whole.info["gradient_evaluations"]
    with pytest.raises(ResumeError, match=r"its warmup is 10, this run's is 20"):
        run_nuts(post, state_file=path, resume=True, **{**opts, "n_warmup": 20})


def test_state_file_is_checked(tmp_path):
    path = tmp_path / "x.state.npz"
    path.write_bytes(b"not an npz")
    with pytest.raises(ResumeError, match=r"x.state.npz cannot be read"):
        checkpoint.load_state(path, {})
    checkpoint.save_state(path, {"sampler": "nuts"}, {"a": np.arange(3)})
    meta, arrays = checkpoint.load_state(path, {"sampler": "nuts"})
    assert meta["schema"] == checkpoint.SCHEMA and arrays["a"].tolist() == [0, 1, 2]
    with pytest.raises(ResumeError, match=r"its sampler is 'nuts', this run's is 'ensemble'"):
        checkpoint.load_state(path, {"sampler": "ensemble"})


def test_cli_resume(synthetic, tmp_path, capsys):  # noqa: F811
    from iaemu_likelihood.cli import main
    from iaemu_likelihood.sampling.output import OutputExistsError, prepare_output

    info = synthetic[2]
    path = tmp_path / "in.yaml"
    path.write_text(yaml.safe_dump(info))
    prefix = tmp_path / "out" / "run"
    args = ["sample", str(path), "--sampler", "ensemble", "-o", str(prefix), "--min-ess", "20",
            "--walkers", "12", "--max-samples", "200", "--no-progress", "--seed", "3"]
    assert main(args + ["--resume"]) == 0              # nothing to resume: a new run
    first = (tmp_path / "out" / "run.1.txt").read_text()
    assert state_path(prefix).exists()
    assert main(args + ["--resume"]) == 0              # finished: the same chain again
    assert (tmp_path / "out" / "run.1.txt").read_text() == first
    with pytest.raises(SystemExit):                    # --force and --resume exclude each other
        main(args + ["--resume", "--force"])
    assert "not allowed with argument" in capsys.readouterr().err
    state_path(prefix).unlink()                        # a chain without a state: nothing to resume
    with pytest.raises(OutputExistsError, match=r"no saved sampler state run.state.npz"):
        prepare_output(prefix, force=False, resume=True)
    assert main(args + ["--resume"]) == 1
    assert main(args + ["--force"]) == 0 and state_path(prefix).exists()
