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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .errors import IotauditError
from .options import (
    ExitStatus,
    FailOn,
    add_trust_store_options,
    as_of_option,
    fail_on_help,
    port_number,
    positive_int,
    positive_seconds,
)


@dataclass(frozen=True, slots=True)
class Command:
    """One sub-command as the light table knows it.

    Attributes:
        name: The sub-command (``collect``).
        module: The ``iotaudit`` module that runs it (imported only when it runs).
        help: The one-line help of ``iotaudit --help``.
        exit_statuses: The line every sub-command help ends with.
        register: Adds the sub-command's arguments without importing ``module`` (light: ``--help`` and
            usage errors cost no pandas); None: ``module.register`` does it (imported to parse).
    """

    name: str
    module: str
    help: str
    exit_statuses: str
    register: Callable[[argparse._SubParsersAction], None] | None = None

    def __post_init__(self) -> None:
        if not self.name or not self.module or not self.help or not self.exit_statuses.startswith("exit status"):
            raise ValueError(f"command {self.name!r}: name, module, help and an 'exit status' line are required")



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


# --- commands defined here, light: their modules are imported only to run them ----------------------

DEFAULT_PROBES = "rsa-tls12,ecdsa-tls12,tls13"  # iotaudit.collection.DEFAULT_PROBES (a test keeps them equal)


def _lazy(module: str, function: str) -> Callable[[argparse.Namespace], int]:
    """The command function ``iotaudit.<module>.<function>``, imported when the command runs."""
    def run(args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(f"iotaudit.{module}"), function)(args)
    run.__qualname__ = f"{module}.{function}"
    return run


COLLECT_EPILOG = """\
examples:
  # the loopback lab started by `iotaudit lab serve --dir lab/`
  iotaudit collect --lab lab/lab.json --out runs/lab
  # an AWS account's ATS endpoints in two regions, every data port
  iotaudit collect --prefix a1b2c3d4e5f6g7 --regions us-east-1,eu-west-1 --out runs/today
  # legacy VeriSign endpoints too, only MQTT ports
  iotaudit collect --prefix a1b2c3d4e5f6g7 --regions us-east-1 \\
      --endpoint-types iot:Data-ATS,iot:Data --ports 8883,443/x-amzn-mqtt-ca --out runs/mqtt
  # ask AWS (needs boto3 and credentials)
  iotaudit collect --describe-endpoint --regions us-east-1 --out runs/described
  # explicit targets; HOST:PORT@ADDRESS connects to ADDRESS with SNI HOST (like curl --resolve)
  iotaudit collect --target a1b2-ats.iot.us-east-1.amazonaws.com:8883@10.1.2.3 --targets more.txt --out runs/x

targets file lines: HOST:PORT[@ADDRESS] [alpn=P,...] [region=R] [type=T] [label=L]   (# comments)
port specs: PORT or PORT/ALPN, e.g. 8883, 443/x-amzn-mqtt-ca, 443, 8443
an endpoint that wants a client certificate still has its chain captured (status client-cert-required);
pass --client-cert/--client-key to complete the handshake instead.
"""


def _register_collect(subparsers: argparse._SubParsersAction) -> None:
    """``iotaudit collect`` and ``iotaudit show`` (run by :mod:`iotaudit.collection`)."""
    p = subparsers.add_parser(
        "collect", help="capture the certificate chains endpoints serve (one run directory)",
        description="Make real TLS handshakes (RSA TLS 1.2, ECDSA TLS 1.2, TLS 1.3) with every target and "
                    "store the served chains, in served order, as a run directory.",
        epilog=COLLECT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_argument_group("targets (combine freely)")
    src.add_argument("--target", action="append", default=[], metavar="HOST:PORT[@ADDRESS]",
                     help="one endpoint; repeatable")
    src.add_argument("--targets", action="append", default=[], metavar="FILE", help="a targets file; repeatable")
    src.add_argument("--lab", metavar="PORTS_JSON",
                     help="the lab's lab.json: its endpoints, labelled with the lab's catalogue")
    src.add_argument("--prefix", metavar="P", help="account endpoint prefix, e.g. a1b2c3d4e5f6g7 (with --regions)")
    src.add_argument("--regions", metavar="R,...", help="comma-separated AWS regions")
    src.add_argument("--endpoint-types", default="iot:Data-ATS", metavar="T,...",
                     help="iot:Data-ATS, iot:Data, iot:CredentialProvider, iot:Jobs (default iot:Data-ATS)")
    src.add_argument("--ports", metavar="SPEC,...",
                     help="PORT or PORT/ALPN specs (default per type: 8883,443/x-amzn-mqtt-ca,443,8443 for data)")
    src.add_argument("--describe-endpoint", action="store_true",
                     help="ask AWS for each type's endpoint in each of --regions (needs boto3)")
    how = p.add_argument_group("how")
    how.add_argument("--probes", default=DEFAULT_PROBES, metavar="P,...",
                     help="handshakes per target (default: %(default)s; also: tls10)")
    how.add_argument("--probe", action="append", default=[], metavar="P", choices=["tls10"],
                     help="add a probe to --probes: tls10 captures the chain of endpoints that speak only "
                          "TLS 1.0/1.1 (old VeriSign-era endpoints, TLS proxies); off by default")
    how.add_argument("--timeout", type=positive_seconds, default=5.0, metavar="S",
                     help="seconds per probe, more than 0 (default 5)")
    how.add_argument("--concurrency", type=positive_int, default=32, metavar="N",
                     help="probes in flight, at least 1 (default 32; capped by the open-files limit, ulimit -n)")
    how.add_argument("--client-cert", metavar="FILE", help="PEM client certificate to present")
    how.add_argument("--client-key", metavar="FILE", help="its PEM private key (default: --client-cert)")
    how.add_argument("--quiet", action="store_true", help="no progress bar and no summary table")
    how.add_argument("--wide", action="store_true",
                     help="print the summary table in full, however long its lines (as show --wide; "
                          "by default it is fitted to the terminal's width like show's)")
    p.add_argument("--out", required=True, metavar="RUN", help="run directory to create")
    p.add_argument("--overwrite", action="store_true", help="replace RUN if it exists")
    p.set_defaults(func=_lazy("collection", "collect_command"))

    s = subparsers.add_parser("show", help="print what a run found, one line per endpoint and probe",
                              description="Print the summary of a run directory, fitted to the terminal's width.")
    s.add_argument("run", metavar="RUN", help="run directory written by collect or import")
    s.add_argument("--wide", action="store_true", help="print every value in full, however long the lines")
    s.set_defaults(func=_lazy("collection", "show_command"))


IMPORT_EPILOG = """\
examples:
  # a chain saved from a browser or a ticket
  iotaudit import chain.pem --host a1b2c3d4e5f6g7-ats.iot.eu-west-1.amazonaws.com --port 8883 --out runs/imported
  # a transcript captured where iotaudit cannot run
  openssl s_client -connect a1b2-ats.iot.us-east-1.amazonaws.com:8883 -showcerts </dev/null > capture.txt
  iotaudit import capture.txt --host a1b2-ats.iot.us-east-1.amazonaws.com --port 8883 --out runs/site-a
  # chains from the loopback lab, labelled with the lab catalogue
  iotaudit import lab-chain.pem --host lab-ats-dual-ats.iot.us-east-1.amazonaws.com --lab-catalog lab/catalog --out runs/x
"""


def _register_import(subparsers: argparse._SubParsersAction) -> None:
    """``iotaudit import`` (run by :mod:`iotaudit.offline`)."""
    p = subparsers.add_parser(
        "import", help="turn PEM/DER/PKCS#7 bundles or `openssl s_client` transcripts into a run",
        description="Import chains captured elsewhere: each FILE becomes one observation (probe 'import') with "
                    "its certificates in served order.  A transcript's \"Certificate chain\" listing is the served "
                    "chain: a certificate it lists but does not carry (s_client without -showcerts) is taken "
                    "from the catalogue only when exactly one catalogue certificate has its subject and issuer "
                    "(the row says so); otherwise the observation is chain-incomplete, which the audit reports "
                    "as unknown, never as broken.  A private key found in a FILE is not imported, and warned about.",
        epilog=IMPORT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="PEM bundle (certificates or PKCS#7), DER certificate, .p7b, or s_client transcript")
    p.add_argument("--host", required=True, help="the endpoint name the chain was served for")
    p.add_argument("--port", type=port_number, default=443, help="its port (default 443)")
    p.add_argument("--lab-catalog", metavar="DIR", help="label with this catalogue directory (e.g. the lab's) "
                                                        "instead of the real AWS one")
    p.add_argument("--out", required=True, metavar="RUN", help="run directory to create")
    p.add_argument("--overwrite", action="store_true", help="replace RUN if it exists")
    p.add_argument("--quiet", action="store_true", help="print only the run path")
    p.set_defaults(func=_lazy("offline", "import_command"))


AUDIT_EPILOG = """\
examples:
  iotaudit audit runs/r1 --inventory data/sample_inventory.csv --out audit/r1
  # from cron: alert when any device is at risk; bad rows are skipped, listed and counted
  iotaudit audit runs/today --inventory fleet.csv --skip-bad-rows --fail-on at-risk --out audit/today
  # with what iotaudit scan read from the firmware (accidental pins, expired anchors, ...)
  iotaudit audit runs/today --inventory fleet.csv --scan scanned/profiles.csv --out audit/today

An inventory with no device (or whose every row is bad) is an input error (exit 2): an audit of nothing
would say "nothing broken".  Chains a run could not record in full (chain-incomplete imports) and probes
that failed on the collecting machine (local-error) are reported as unknown, never as broken.
"""


def _register_audit(subparsers: argparse._SubParsersAction) -> None:
    """``iotaudit audit`` (run by :mod:`iotaudit.auditing`)."""
    parser = subparsers.add_parser(
        "audit", help="audit a device inventory against a collected run",
        description="Validate every chain each firmware profile may meet, at --as-of (default: the run's time), "
                    "and write coverage, fleet, roots to add, expiry, cliff and pinning frames "
                    "(Parquet + CSV) and summary.json to --out.",
        epilog=AUDIT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run", help="run directory (iotaudit collect / import)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--inventory", help="device inventory: .csv, .parquet, .json, a glob of them, "
                                            "or a directory of Parquet files (a partitioned dataset)")
    source.add_argument("--profiles", metavar="FILE",
                        help="pre-aggregated profile table instead: the inventory's columns without "
                             "device_id, plus devices (docs/profile-table.md); no devices.parquet is written")
    parser.add_argument("--as-of", type=as_of_option, default=None, metavar="DATE",
                        help="validate at this ISO 8601 date or date-time with a time zone (default: run time)")
    parser.add_argument("--memory-limit", default="1GB", metavar="SIZE",
                        help="DuckDB's memory limit for reading the inventory (default 1GB); past it, it spills to "
                             "the temp directory (TMPDIR)")
    parser.add_argument("--horizon-years", type=positive_int, default=15, metavar="N",
                        help="how far ahead to look for break dates (default 15)")
    parser.add_argument("--fail-on", choices=[f.value for f in FailOn], default=FailOn.BROKEN.value,
                        help=fail_on_help())
    parser.add_argument("--skip-bad-rows", action="store_true",
                        help="leave bad inventory rows out (each is printed, and counted in summary.json)")
    add_trust_store_options(parser)
    parser.add_argument("--cross-check", action="store_true",
                        help="also ask each profile's real TLS library, where installed here, about every chain it "
                             "meets (crosscheck frame; missing libraries are listed, not errors)")
    parser.add_argument("--scan", metavar="PATH",
                        help="the findings of iotaudit scan (its scan.parquet, or the profiles.csv it sits next to): "
                             "their notes for the inventory's profiles, judged at --as-of, become the firmware_notes "
                             "frame")
    parser.add_argument("--out", required=True, help="audit directory to create")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    parser.set_defaults(func=_lazy("auditing", "audit_command"))


def _register_drift(subparsers: argparse._SubParsersAction) -> None:
    """``iotaudit drift OLD_RUN NEW_RUN`` (run by :mod:`iotaudit.run_drift`)."""
    parser = subparsers.add_parser(
        "drift",
        help="compare two runs: new/removed certificates, new issuers, changed chain tops, silent endpoints",
        description="Compare two runs of the same endpoints and list what changed, most alarming first.",
    )
    parser.add_argument("old_run", type=Path, metavar="OLD_RUN", help="the earlier run directory (baseline)")
    parser.add_argument("new_run", type=Path, metavar="NEW_RUN", help="the later run directory")
    parser.add_argument("--out", type=Path, help="also write the changes to this .csv or .parquet file")
    parser.add_argument("--fail-on-change", action="store_true", help="exit 1 when anything changed")
    parser.set_defaults(func=_lazy("run_drift", "drift_command"))


_USAGE_IO = "2 usage, input or I/O error, 70 internal error"
# Order is the order of the help text: the pipeline, then the lab.
COMMANDS: tuple[Command, ...] = (
    Command("scan", "firmware.command", "read trust stores, pins and TLS stacks from firmware images, build trees, sources",
            f"exit status: 0 profiles written, {_USAGE_IO}"),
    Command("inventory", "fleetjoin", "build device inventories: join scanned profiles with a device list",
            f"exit status: 0 inventory written, {_USAGE_IO}"),
    Command("collect", "collection", "capture the certificate chains endpoints serve (one run directory)",
            f"exit status: 0 run written, 3 run written but some probes failed locally (local-error), {_USAGE_IO}",
            _register_collect),
    Command("show", "collection", "print what a run found, one line per endpoint and probe",
            f"exit status: 0 printed, {_USAGE_IO}", _register_collect),
    Command("import", "offline", "turn PEM/DER/PKCS#7 bundles or `openssl s_client` transcripts into a run",
            f"exit status: 0 run written, {_USAGE_IO}", _register_import),
    Command("audit", "auditing", "audit a device inventory against a collected run",
            f"exit status: 0 nothing crosses --fail-on, 1 something does, {_USAGE_IO}", _register_audit),
    Command("report", "reports", "audit a run against an inventory and render the HTML report set",
            f"exit status: 0 nothing crosses --fail-on, 1 something does, {_USAGE_IO}"),
    Command("drift", "run_drift", "compare two runs: new intermediates, issuers, anchors",
            f"exit status: 0 compared, 1 something changed with --fail-on-change, {_USAGE_IO}", _register_drift),
    Command("lab", "lab", "serve or stop the loopback lab of AWS-IoT-like endpoints",
            f"exit status: 0 done, {_USAGE_IO}"),
)
COMMAND_MODULES = tuple(dict.fromkeys(cmd.module for cmd in COMMANDS))


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
    registers: dict[object, Callable[[argparse._SubParsersAction], None]] = {}
    for cmd in COMMANDS:
        if argv is None or cmd.name == wanted:
            if cmd.register is not None:
                registers.setdefault(cmd.register, cmd.register)
            else:
                registers.setdefault(cmd.module, _module_register(cmd.module))
    for register in registers.values():
        register(sub)
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


def _module_register(module: str) -> Callable[[argparse._SubParsersAction], None]:
    def register(sub: argparse._SubParsersAction) -> None:
        importlib.import_module(f"iotaudit.{module}").register(sub)
    return register


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
        parser.print_help()
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
