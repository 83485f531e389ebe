"""The ``iaemu`` command line: one entry point, one module per subcommand.

Each subcommand module exposes ``build_parser(prog) -> argparse.ArgumentParser`` and
``main(args) -> int``; it is imported only when its subcommand runs, so ``iaemu info``
never pays for halotools or torch.

A user error raised by a subcommand (any :class:`~iaemu_likelihood.errors.IAEmuError`,
``ValueError``, ``OSError``, ``KeyError``/``IndexError`` or a corrupt ``.npz``) is printed as one line,
``iaemu SUBCOMMAND: message``, with exit status 1 and no traceback; ``--debug`` (anywhere on
the command line) shows the traceback instead. Any other exception (a library's ``RuntimeError``
on a malformed file, a ``RecursionError``, a bug) is one line too, naming its type and asking
for a report with ``--debug``: no input reaches the user as a raw traceback.
"""
from __future__ import annotations

import argparse
import logging
import sys
import warnings
import zipfile
from importlib import import_module

from .errors import IAEmuError

__all__ = ["main", "COMMANDS", "one_line", "USER_ERRORS", "subcommand_parser"]

#: Exceptions a subcommand raises for bad input: printed as one line, no traceback.
USER_ERRORS = (IAEmuError, ValueError, OSError, LookupError, zipfile.BadZipFile)
#: Command-line flag (accepted anywhere) that shows tracebacks instead of one-line errors.
DEBUG_FLAG = "--debug"

#: subcommand -> (module, one-line help)
COMMANDS = {
    "info": ("iaemu_likelihood.cli_info", "version, shipped weights and parameter ranges"),
    "verify": ("iaemu_likelihood.verify", "check weight checksums and reference predictions"),
    "plot": ("iaemu_likelihood.plotting", "GetDist triangle plot of one or more chains"),
    "sample": ("iaemu_likelihood.sampling.cli", "NUTS or ensemble sampling of a Cobaya yaml's posterior"),
    "cosmosis-dir": ("iaemu_likelihood.cli_cosmosis_dir",
                     "print the folder of the installed CosmoSIS modules (for IAEMU_COSMOSIS_DIR)"),
    "examples": ("iaemu_likelihood.cli_examples", "copy the example Cobaya yamls into a folder"),
    "build-catalog": ("iaemu_likelihood.training.catalog_cli",
                      "build the offline halo catalog (CAMB + PySCo + kdcount FoF)"),
    "build-suite": ("iaemu_likelihood.training.suite", "build every N-body box and halo catalog of a cosmology suite"),
    "generate": ("iaemu_likelihood.training.generate",
                 "generate a training set of halotools-IA mocks from a config file"),
    "train": ("iaemu_likelihood.training.train", "train an emulator and export a weights folder"),
    "evaluate": ("iaemu_likelihood.training.evaluate",
                 "evaluate a weights folder on a test set (report.json/md, figures)"),
    "reseal": ("iaemu_likelihood.cli_reseal",
               "re-validate a weights folder edited on purpose and rewrite its SHA256SUMS"),
    "convert-checkpoint": ("iaemu_likelihood.training.convert",
                           "convert a reference-code IAEmu checkpoint into a weights folder"),
    "paint": ("iaemu_likelihood.field.cli", "paint HOD galaxies onto a dark-matter density mesh (field painter)"),
    "field-data": ("iaemu_likelihood.training.field_data", "density mesh and HOD galaxy sets of one painter box"),
    "field-train": ("iaemu_likelihood.training.field_train", "train the field-level galaxy painter"),
    "field-calibrate": ("iaemu_likelihood.training.field_calibration",
                        "post-hoc count calibration of a painter on its training boxes"),
}


def subcommand_parser(prog: str, doc: str, show_defaults: bool = False) -> argparse.ArgumentParser:
    """A subcommand's parser: ``prog`` (``iaemu SUBCOMMAND``) and its module docstring ``doc`` as
    the description, printed as written; ``show_defaults`` appends each option's default to its
    help instead (for a one-line description)."""
    formatter = (argparse.ArgumentDefaultsHelpFormatter if show_defaults
                 else argparse.RawDescriptionHelpFormatter)
    return argparse.ArgumentParser(prog=prog, description=doc, formatter_class=formatter)


def _top_parser() -> argparse.ArgumentParser:
    lines = [f"  {name:<20s}{help_}" for name, (_, help_) in COMMANDS.items()]
    parser = argparse.ArgumentParser(
        prog="iaemu",
        description="iaemu: emulator of galaxy intrinsic-alignment correlations.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="subcommands:\n" + "\n".join(lines) + "\n\nRun 'iaemu SUBCOMMAND -h' for its options.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="-v: debug messages of iaemu; -vv: of every library too")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument(DEBUG_FLAG, action="store_true",
                        help="show the traceback of an error instead of one line (accepted anywhere)")
    parser.add_argument("command", nargs="?", choices=sorted(COMMANDS), metavar="SUBCOMMAND")
    parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def one_line(exc: BaseException) -> str:
    """An exception as one line: its message with newlines folded, or its type when empty."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and len(exc.args) == 1 else str(exc)
    text = " ".join(part.strip() for part in text.splitlines() if part.strip())
    return text or type(exc).__name__


def _one_line_warnings(command: str):
    """A ``warnings.showwarning`` that prints a library's warning as one line (no source line)."""
    def show(message, category, filename, lineno, file=None, line=None):
        stream = file if file is not None else sys.stderr
        stream.write(f"iaemu {command}: warning: {category.__name__}: {one_line(message)}\n")

    return show


def main(argv: list[str] | None = None) -> int:
    """Run the ``iaemu`` command line; returns the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv
    argv = [a for a in argv if a != DEBUG_FLAG]
    parser = _top_parser()
    ns = parser.parse_args(argv)
    if ns.version:
        from . import __version__

        sys.stdout.write(f"iaemu {__version__}\n")
        return 0
    if ns.command is None:
        parser.print_help()
        return 2
    # iaemu's own messages at INFO (-v: DEBUG); other libraries at WARNING (-vv: DEBUG too)
    logging.basicConfig(level=logging.DEBUG if ns.verbose >= 2 else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("iaemu_likelihood").setLevel(logging.DEBUG if ns.verbose else logging.INFO)
    module_name, _ = COMMANDS[ns.command]
    try:
        module = import_module(module_name)
    except ImportError as exc:
        sys.stderr.write(f"iaemu {ns.command}: missing dependency ({exc}). Training commands need "
                         "the 'train' extra: pip install 'iaemu-likelihood[train]'\n")
        return 1
    sub = module.build_parser(f"iaemu {ns.command}")
    sub_args = sub.parse_args(ns.args)
    with warnings.catch_warnings():  # restores showwarning when main is called in-process
        if not debug:
            warnings.showwarning = _one_line_warnings(ns.command)
        return _run(module, sub_args, ns.command, debug)


def _run(module, sub_args, command: str, debug: bool) -> int:
    """``module.main(sub_args)`` with user errors as one line (see the module docstring)."""
    try:
        return int(module.main(sub_args) or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        sys.stderr.write(f"iaemu {command}: interrupted\n")
        return 130
    except ImportError as exc:
        if debug:
            raise
        sys.stderr.write(f"iaemu {command}: missing dependency ({one_line(exc)})\n")
        return 1
    except USER_ERRORS as exc:
        if debug:
            raise
        sys.stderr.write(f"iaemu {command}: {one_line(exc)} (--debug for the traceback)\n")
        return 1
    except Exception as exc:  # not a recognised user error: still one line, never a raw traceback
        if debug:
            raise
        sys.stderr.write(f"iaemu {command}: unexpected {type(exc).__name__}: {one_line(exc)} "
                         "(rerun with --debug for the traceback and report it if the input was valid)\n")
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
