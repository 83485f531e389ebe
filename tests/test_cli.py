"""The ``iaemu`` command line turns user errors into one line (``--debug``: the traceback)."""
import subprocess
import sys

import pytest

from iaemu_likelihood.cli import COMMANDS, main, one_line
from iaemu_likelihood.errors import OutOfRangeError


def test_one_line_folds_messages():
    assert one_line(ValueError("a\n  b\n")) == "a b"
    assert one_line(KeyError("mu_cen")) == "mu_cen"
    assert one_line(OutOfRangeError()) == "OutOfRangeError"


@pytest.mark.parametrize("argv, named", [
    (["plot", "no/such/chain"], "no/such/chain"),
    (["plot", "no/such/chain", "--truth", "mu_cen=high"], "mu_cen=high"),
])
def test_user_errors_are_one_line_without_traceback(argv, named, capsys):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"iaemu {argv[0]}: ") and named in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_debug_flag_shows_the_exception_anywhere_on_the_line():
    with pytest.raises(ValueError):
        main(["plot", "no/such/chain", "--debug"])
    with pytest.raises(ValueError):
        main(["--debug", "plot", "no/such/chain"])


def test_console_script_one_line_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "iaemu_likelihood.cli", "plot", str(tmp_path / "x")],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_every_subcommand_has_help():
    for name in COMMANDS:
        with pytest.raises(SystemExit) as info:
            main([name, "--help"])
        assert info.value.code == 0


def _fake_subcommand(monkeypatch, run):
    """Register ``iaemu fake`` whose main calls ``run()``."""
    import argparse
    import types

    module = types.ModuleType("iaemu_fake_subcommand")
    module.build_parser = lambda prog: argparse.ArgumentParser(prog=prog)
    module.main = lambda args: run()
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(COMMANDS, "fake", (module.__name__, "test only"))


def _raise(exc):
    raise exc


@pytest.mark.parametrize("exc", [RuntimeError("[enforce fail at x.cc:1] not a zip\n  detail"),
                                 EOFError(), RecursionError("maximum recursion depth exceeded"),
                                 TypeError("expected str, not int"), MemoryError()])
def test_any_exception_type_is_one_line_naming_its_type(monkeypatch, capsys, exc):
    _fake_subcommand(monkeypatch, lambda: _raise(exc))
    assert main(["fake"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("iaemu fake: unexpected ") and type(exc).__name__ in err
    assert err.count("\n") == 1 and "Traceback" not in err
    with pytest.raises(type(exc)):
        main(["fake", "--debug"])


def test_library_warnings_are_one_line_and_the_filter_is_restored(monkeypatch, capsys):
    import warnings

    def warn_twice():
        warnings.warn("input contained no data:\n  line two", UserWarning, stacklevel=2)
        return 0

    before = warnings.showwarning
    _fake_subcommand(monkeypatch, warn_twice)
    assert main(["fake"]) == 0
    err = capsys.readouterr().err
    assert err == "iaemu fake: warning: UserWarning: input contained no data: line two\n"
    assert warnings.showwarning is before
