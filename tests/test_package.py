"""The installed package: cheap import, metadata, console script."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import iaemu_likelihood

REPO = Path(__file__).resolve().parents[1]
# third-party top-level packages that `import iaemu_likelihood, iaemu_likelihood.training` may load
LIGHT_THIRD_PARTY = {"numpy"}
HEAVY_MODULES = ("torch", "halotools", "cobaya", "numba", "h5py", "getdist", "matplotlib")


def _run_python(code, cwd):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd,
                          check=True)


def test_import_is_cheap_quiet_and_light(tmp_path):
    """Importing the package loads only the standard library, numpy and itself, and prints nothing.
    (What it loads, not a wall-clock time: the import time is measured by benchmarks, a timed
    test fails on a loaded machine.)"""
    code = (
        "import json, sys\n"
        "before = set(sys.modules)\n"
        "import iaemu_likelihood, iaemu_likelihood.training\n"
        "new = sorted({m.split('.')[0] for m in set(sys.modules) - before} - set(sys.stdlib_module_names))\n"
        f"heavy = [m for m in {HEAVY_MODULES!r} if m in sys.modules]\n"
        "sys.stderr.write(json.dumps({'third_party': new, 'heavy': heavy}))\n"
    )
    run = _run_python(code, tmp_path)
    assert run.stdout == "", "importing iaemu_likelihood printed something"
    report = json.loads(run.stderr.strip().splitlines()[-1])
    assert report["heavy"] == [], report
    assert set(report["third_party"]) - {"iaemu_likelihood"} <= LIGHT_THIRD_PARTY, report


@pytest.mark.skipif(os.environ.get("IAEMU_TEST_INSTALLED") != "1",
                    reason="only under `make test`, which installs the wheel (not editable)")
def test_package_is_the_installed_one_not_the_checkout():
    installed = Path(iaemu_likelihood.__file__).resolve()
    assert installed.parent != REPO / "iaemu_likelihood", f"tests import the source tree ({installed})"
    assert "site-packages" in installed.parts, f"not an installed (non-editable) copy: {installed}"


def test_version_comes_from_metadata():
    from importlib.metadata import version

    assert iaemu_likelihood.__version__ == version("iaemu-likelihood")


def test_lazy_attribute_error_names_the_attribute():
    with pytest.raises(AttributeError, match="no_such_thing"):
        iaemu_likelihood.no_such_thing  # noqa: B018


def test_errors_hierarchy():
    from iaemu_likelihood.errors import IAEmuError, OutOfRangeError, WeightsIntegrityError

    assert issubclass(OutOfRangeError, ValueError)
    assert issubclass(OutOfRangeError, IAEmuError)
    assert issubclass(WeightsIntegrityError, IAEmuError)


def test_console_script_info_runs_outside_checkout(tmp_path):
    exe = Path(sys.executable).with_name("iaemu")
    result = subprocess.run([str(exe), "info"], capture_output=True, text=True, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": ""})
    assert result.returncode == 0, result.stderr
    assert iaemu_likelihood.__version__ in result.stdout
    assert "r bins: 20 log bins" in result.stdout


def test_console_script_lists_subcommands():
    from iaemu_likelihood.cli import COMMANDS, main

    for name in ("info", "verify", "plot", "build-catalog", "generate", "train", "evaluate",
                 "convert-checkpoint"):
        assert name in COMMANDS
    assert main([]) == 2


def test_package_data_ships_weights_package():
    from iaemu_likelihood.weights import weights_root

    assert weights_root().is_dir()


def test_every_subpackage_is_declared_in_setup_cfg():
    """A folder with an ``__init__.py`` that setup.cfg does not list is missing from the wheel
    (an editable install hides it): every subcommand and import must work from ``pip install .``."""
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    declared = set(cfg["options"]["packages"].split())
    mapping = dict(line.split("=", 1) for line in cfg["options"]["package_dir"].strip().splitlines())
    mapping = {k.strip(): v.strip() for k, v in mapping.items()}
    missing = []
    for package, folder in mapping.items():
        root = REPO / folder
        for init in root.rglob("__init__.py"):
            rel = init.parent.relative_to(root)
            name = ".".join([package, *rel.parts]) if rel.parts else package
            owner = max((p for p in mapping if name == p or name.startswith(p + ".")), key=len)
            if owner == package and name not in declared:
                missing.append(name)
    assert missing == [], f"packages missing from setup.cfg [options] packages: {missing}"
