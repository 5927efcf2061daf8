"""Command line: ``iotaudit <command> ...`` (also ``python -m iotaudit``).

Commands are listed in a light table (:data:`COMMANDS`): ``iotaudit --help``
and a usage error at the top level import nothing heavy.  Running a command
imports only the module that defines it; that module's ``register(subparsers)``
adds its sub-command(s) and sets ``func`` on the parsed arguments, and
``func(args)`` returns the exit status.

Exit status (:class:`ExitStatus`), one meaning each, so cron and CI can alert on it:

===  =======================================================================
0    success
1    a threshold was crossed (``audit`` / ``report --fail-on``, ``drift --fail-on-change``)
2    usage, input or I/O error (one line naming the thing and the rule; no traceback)
3    ``collect`` finished and saved its run, but some probes failed on *our* side
     (status ``local-error``: out of file descriptors, memory or buffers); those endpoints are unknown
70   internal error (a bug: rerun with ``--debug`` and report the traceback)
130  interrupted (Ctrl-C)
===  =======================================================================
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from . import __version__
from .errors import IotauditError
from .options import ExitStatus


@dataclass(frozen=True, slots=True)
class Command:
    """One sub-command as the light table knows it.

    Attributes:
        name: The sub-command (``collect``).
        module: The ``iotaudit`` module whose ``register`` defines it (imported only when it runs).
        help: The one-line help of ``iotaudit --help``.
        exit_statuses: The line every sub-command help ends with.
    """

    name: str
    module: str
    help: str
    exit_statuses: str

    def __post_init__(self) -> None:
        if not self.name or not self.module or not self.help or not self.exit_statuses.startswith("exit status"):
            raise ValueError(f"command {self.name!r}: name, module, help and an 'exit status' line are required")


_USAGE_IO = "2 usage, input or I/O error, 70 internal error"
# Order is the order of the help text: the pipeline, then the lab.
COMMANDS: tuple[Command, ...] = (
    Command("collect", "collect", "capture the certificate chains endpoints serve (one run directory)",
            f"exit status: 0 run written, 3 run written but some probes failed locally (local-error), {_USAGE_IO}"),
    Command("show", "collect", "print what a run found, one line per endpoint and probe",
            f"exit status: 0 printed, {_USAGE_IO}"),
    Command("import", "offline", "turn PEM/DER/PKCS#7 bundles or `openssl s_client` transcripts into a run",
            f"exit status: 0 run written, {_USAGE_IO}"),
    Command("audit", "audit", "audit a device inventory against a collected run",
            f"exit status: 0 nothing crosses --fail-on, 1 something does, {_USAGE_IO}"),
    Command("report", "reports", "audit a run against an inventory and render the HTML report set",
            f"exit status: 0 nothing crosses --fail-on, 1 something does, {_USAGE_IO}"),
    Command("drift", "drift", "compare two runs: new intermediates, issuers, anchors",
            f"exit status: 0 compared, 1 something changed with --fail-on-change, {_USAGE_IO}"),
    Command("lab", "lab", "serve or stop the loopback lab of AWS-IoT-like endpoints",
            f"exit status: 0 done, {_USAGE_IO}"),
)
COMMAND_MODULES = tuple(dict.fromkeys(cmd.module for cmd in COMMANDS))

DESCRIPTION = """\
Can your AWS IoT fleet authenticate AWS IoT Core, today and on every date ahead?

Typical session (no AWS account needed, everything on 127.0.0.1):
  iotaudit lab serve --dir lab/                     start the loopback lab of AWS-IoT-like endpoints
  iotaudit collect --lab lab/lab.json --out runs/r1 capture every chain each endpoint serves
  iotaudit show runs/r1                             what was found, one line per endpoint and probe
  iotaudit audit runs/r1 --inventory data/sample_inventory.csv --out audit/
  iotaudit report --run runs/r1 --inventory data/sample_inventory.csv --out reports/r1
  iotaudit lab stop --dir lab/

Against AWS: iotaudit collect --prefix a1b2c3d4e5-ats --regions us-east-1,eu-west-1 --out runs/today
"""

EPILOG = """\
exit status: 0 success, 1 a threshold was crossed (--fail-on), 2 usage, input or I/O error,
3 collect saved its run but some probes failed locally, 70 internal error (rerun with --debug), 130 interrupted
"""


# --- the parser -------------------------------------------------------------------------------


def _base_parser() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    parser = argparse.ArgumentParser(
        prog="iotaudit", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"iotaudit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser, sub


def _end_help_with_exit_statuses(parser: argparse.ArgumentParser, line: str) -> None:
    """Append the exit-status line to ``parser``'s help and its nested sub-commands' (``lab serve``)."""
    if line not in (parser.epilog or ""):
        parser.epilog = f"{parser.epilog.rstrip()}\n\n{line}" if parser.epilog else line
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _end_help_with_exit_statuses(child, line)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``iotaudit`` argument parser.

    Args:
        argv: The arguments about to be parsed: only the module of the command they name is imported
            (none for ``--help`` or an unknown command, where the light table gives the help lines).
            None builds every command (for documentation and tests).
    """
    parser, sub = _base_parser()
    wanted = None if argv is None else _command_name(argv)
    for module_name in dict.fromkeys(cmd.module for cmd in COMMANDS if argv is None or cmd.name == wanted):
        importlib.import_module(f"iotaudit.{module_name}").register(sub)
    for cmd in COMMANDS:
        if cmd.name not in sub.choices:  # a light placeholder: listed in --help, never run
            sub.add_parser(cmd.name, help=cmd.help)
        _end_help_with_exit_statuses(sub.choices[cmd.name], cmd.exit_statuses)
    # Help lists the commands in the table's order, with the table's help lines.
    order = {cmd.name: i for i, cmd in enumerate(COMMANDS)}
    helps = {cmd.name: cmd.help for cmd in COMMANDS}
    sub._choices_actions.sort(key=lambda action: order.get(action.dest, len(order)))
    for action in sub._choices_actions:
        action.help = helps.get(action.dest, action.help)
    return parser


def _command_name(argv: Sequence[str]) -> str | None:
    """The first argument that is not a top-level option: the command name (or None)."""
    for arg in argv:
        if arg in ("--debug",):
            continue
        if arg.startswith("-"):
            return None
        return arg
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (see :class:`ExitStatus`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return ExitStatus.USAGE
    command = args.command
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"iotaudit {command}: interrupted", file=sys.stderr)
        return ExitStatus.INTERRUPTED
    except BrokenPipeError:  # `iotaudit show RUN | head`: the reader has seen enough
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitStatus.OK
    except IotauditError as err:
        if args.debug:
            raise
        print(f"iotaudit {command}: error: {err}", file=sys.stderr)
        return ExitStatus.USAGE
    except OSError as err:
        if args.debug:
            raise
        where = f" {err.filename}" if getattr(err, "filename", None) else ""
        print(f"iotaudit {command}: error: cannot use{where}: {err.strerror or err}", file=sys.stderr)
        return ExitStatus.USAGE
    except Exception as err:  # a bug: one line, not a traceback that reads like a finding
        if args.debug:
            raise
        print(f"iotaudit {command}: internal error: {type(err).__name__}: {err} "
              "(rerun with --debug for the traceback)", file=sys.stderr)
        return ExitStatus.INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
