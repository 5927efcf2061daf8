"""The exceptions iotaudit raises, all under :class:`IotauditError`.

Work over a fleet (many targets, many devices) records per-item failures as
rows with a status; these exceptions are for single-item functions and for
input that cannot be used at all.
"""

from __future__ import annotations

from pathlib import Path


class IotauditError(Exception):
    """Raised when iotaudit cannot do what it was asked; base of all others."""


class PemError(IotauditError, ValueError):
    """Raised when a PEM file or block cannot be parsed as a certificate.

    Attributes:
        source: The file (or other source label) the PEM text came from.
        block: 1-based number of the offending PEM block, or None when the
            whole input is unusable (e.g. it holds no certificate at all).
    """

    def __init__(self, source: str | Path, block: int | None, reason: str) -> None:
        self.source = str(source)
        self.block = block
        self.reason = reason
        where = f"{self.source}, PEM block {block}" if block is not None else self.source
        super().__init__(f"{where}: {reason}")


class TargetError(IotauditError, ValueError):
    """Raised when a target specification (HOST:PORT[@ADDRESS], targets file, lab file) is invalid."""

    def __init__(self, spec: str, reason: str) -> None:
        self.spec = spec
        self.reason = reason
        super().__init__(f"target {spec!r}: {reason}")


class LabError(IotauditError):
    """Raised when the lab cannot start, its keys are missing, or its ports file is unusable."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"lab {self.path}: {reason}")


class RunError(IotauditError):
    """Raised when a run directory is missing, incomplete or not an iotaudit run."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"run {self.path}: {reason}")


class CatalogError(IotauditError, KeyError):
    """Raised when a catalogue is malformed or a catalogue name is unknown."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"catalogue {name!r}: {reason}")

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


class InventoryError(IotauditError, ValueError):
    """Raised when a device inventory cannot be used.

    Attributes:
        problems: One :class:`InventoryProblem`-like tuple per bad row and column
            (row number as in the source file, column, reason).
    """

    def __init__(self, source: str | Path, problems: list[tuple[int | None, str | None, str]]) -> None:
        self.source = str(source)
        self.problems = problems
        lines = [
            f"  row {row if row is not None else '-'}, column {col or '-'}: {reason}"
            for row, col, reason in problems[:50]
        ]
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(f"inventory {self.source}: {len(problems)} problem(s)\n" + "\n".join(lines) + more)


class PinError(IotauditError, ValueError):
    """Raised when a pin cannot be parsed; names the pin and the rule it broke.

    Attributes:
        pin: The pin text as written.
        reason: Why it was rejected.
    """

    def __init__(self, pin: str, reason: str) -> None:
        self.pin = pin
        self.reason = reason
        super().__init__(f"pin {pin!r}: {reason}")


class ReportError(IotauditError):
    """Raised when a report notebook fails; names the notebook and the failing cell."""

    def __init__(self, notebook: str | Path, cell: int | None, reason: str, executed: str | Path | None = None) -> None:
        self.notebook = str(notebook)
        self.cell = cell
        self.reason = reason
        self.executed = str(executed) if executed is not None else None
        where = f"{self.notebook}, cell {cell}" if cell is not None else self.notebook
        kept = f" (executed notebook kept at {self.executed})" if self.executed else ""
        super().__init__(f"report notebook {where} failed: {reason}{kept}")


class ScanError(IotauditError, ValueError):
    """Raised when a firmware input or an ESP-IDF certificate bundle cannot be used at all.

    Attributes:
        path: The file (or other source label).
        offset: Byte offset of the problem in that file, or None.
        reason: What is wrong.
    """

    def __init__(self, path: str | Path, offset: int | None, reason: str) -> None:
        self.path = str(path)
        self.offset = offset
        self.reason = reason
        where = f"{self.path} at byte {offset}" if offset is not None else self.path
        super().__init__(f"{where}: {reason}")


class OptionError(IotauditError, ValueError):
    """Raised when an option or parameter value breaks its rule (``--timeout -1``, ``concurrency=0``).

    Attributes:
        option: The option or parameter name as the caller wrote it (``--timeout``, ``as_of``).
        value: The offending value, as text.
        reason: The rule it broke.
    """

    def __init__(self, option: str, value: object, reason: str) -> None:
        self.option = option
        self.value = str(value)
        self.reason = reason
        super().__init__(f"{option} {self.value}: {reason}")


class WriteError(IotauditError, OSError):
    """Raised when an output directory or file cannot be written (full disk, read-only, permissions).

    Attributes:
        path: The directory or file that could not be written.
        reason: The operating system's reason (``No space left on device``).
        kept: Where the results were saved instead, if anywhere.
    """

    def __init__(self, path: str | Path, reason: str, kept: str | Path | None = None) -> None:
        self.path = str(path)
        self.reason = reason
        self.kept = str(kept) if kept is not None else None
        saved = f"; the results were saved to {self.kept} instead" if self.kept else ""
        super().__init__(f"cannot write {self.path}: {reason}{saved}")

    def __str__(self) -> str:  # OSError would format its own (errno, strerror) pair
        return self.args[0]
