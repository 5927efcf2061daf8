"""Command line: ``iotaudit <command> ...`` (also ``python -m iotaudit``).

Each pipeline module that has a command defines ``register(subparsers)``,
which adds its sub-command(s) and sets ``func`` on the parsed arguments;
``func(args)`` returns the exit status.  Exit status: 0 success, 1 a
threshold was crossed (``report --fail-on``), 2 usage or input error.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from . import __version__
from .errors import IotauditError

# Order is the order of the help text: the pipeline, then the lab.
COMMAND_MODULES = ("collect", "offline", "audit", "reports", "drift", "lab")
# Sub-command -> the module that registers it: a command line naming one imports only that module, so
# ``iotaudit collect`` never imports pandas or papermill (issue 11).
COMMAND_MODULE_OF = {"collect": "collect", "show": "collect", "import": "offline", "audit": "audit",
                     "report": "reports", "drift": "drift", "lab": "lab"}

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


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The ``iotaudit`` argument parser with every available sub-command (or only those of module ``only``)."""
    parser = argparse.ArgumentParser(
        prog="iotaudit", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"iotaudit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES if only is None else (only,):
        try:
            module = importlib.import_module(f"iotaudit.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"iotaudit.{name}":
                continue
            raise
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (see module docstring)."""
    words = list(sys.argv[1:] if argv is None else argv)
    first = next((w for w in words if not w.startswith("-")), None)
    parser = build_parser(COMMAND_MODULE_OF.get(first) if first is not None and words[0] == first else None)
    args = parser.parse_args(words)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except IotauditError as err:
        print(f"iotaudit {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"iotaudit {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
