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
