"""The persistent JAX compilation cache of iaemu sample: where it goes and when it is refused."""
import os
import stat

import pytest

from iaemu_likelihood.sampling.compile_cache import ENV_VAR, cache_folder, enable_compilation_cache


class FakeConfig:
    """Stands in for ``jax.config`` (the real one is process-wide)."""

    def __init__(self, cache_dir=None):
        self.jax_compilation_cache_dir = cache_dir
        self.updates = {}

    def update(self, name, value):
        self.updates[name] = value
        setattr(self, name, value)


class FakeJax:
    def __init__(self, cache_dir=None):
        self.config = FakeConfig(cache_dir)


def test_default_folder_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_folder() == tmp_path / "iaemu" / "jax"


@pytest.mark.parametrize("value", ["off", "0", "OFF", ""])
def test_disabled_by_environment(monkeypatch, value):
    monkeypatch.setenv(ENV_VAR, value)
    fake = FakeJax()
    assert cache_folder() is None and enable_compilation_cache(fake) is None
    assert fake.config.updates == {}


def test_private_folder_is_created_and_used(monkeypatch, tmp_path):
    folder = tmp_path / "a" / "cache"
    monkeypatch.setenv(ENV_VAR, str(folder))
    fake = FakeJax()
    assert enable_compilation_cache(fake) == folder
    # small programs too: NumPyro runs dozens outside its compiled loops, every run
    assert fake.config.updates == {"jax_compilation_cache_dir": str(folder),
                                   "jax_persistent_cache_min_compile_time_secs": 0.0}
    assert stat.S_IMODE(folder.stat().st_mode) & 0o077 == 0


def test_folder_writable_by_others_is_refused(monkeypatch, tmp_path, caplog):
    folder = tmp_path / "shared"
    folder.mkdir()
    os.chmod(folder, 0o777)
    monkeypatch.setenv(ENV_VAR, str(folder))
    fake = FakeJax()
    assert enable_compilation_cache(fake) is None and fake.config.updates == {}
    assert "not private" in caplog.text and str(folder) in caplog.text


def test_a_file_in_the_way_and_a_configured_cache(monkeypatch, tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    monkeypatch.setenv(ENV_VAR, str(path))
    assert enable_compilation_cache(FakeJax()) is None
    # a cache the caller configured in JAX is left alone
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "ours"))
    fake = FakeJax(cache_dir="/their/cache")
    assert enable_compilation_cache(fake) is None and fake.config.updates == {}
    assert not (tmp_path / "ours").exists()


def test_compile_timer_merges_overlapping_spans():
    """A jit traced inside another reports its own span inside the outer one: counted once."""
    from iaemu_likelihood.sampling.compile_cache import COMPILE_EVENTS, CompileTimer

    class Monitoring:
        def __getattr__(self, name):
            return lambda *args, **kwargs: None

    class Jax:
        monitoring = Monitoring()

    timer = CompileTimer(Jax())
    for start, end in ((10.0, 14.0), (11.0, 12.0), (13.5, 15.0), (20.0, 21.0)):
        timer._span(COMPILE_EVENTS[0], start, end)
    timer._span("/jax/some/other_event", 0.0, 100.0)
    assert timer.seconds() == pytest.approx(6.0)
    assert timer.seconds(12.0, 20.5) == pytest.approx(3.5)
