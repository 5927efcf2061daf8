"""Ask the real TLS libraries installed on this machine what they decide about a served chain.

Each supported library has one private adapter module (``_openssl``, ``_gnutls``, ``_bearssl``,
``_mbedtls``, ``_wolfssl``) exposing ``STACK_IDS``, ``unavailable(stack_id)``, ``library_version(stack_id)`` and
``verify_many(stack_id, cases)`` (the contract in issue 7, "Proof against the real libraries").
This front finds the adapter for a stack id, says why a library cannot be used here, and runs a
batch of :class:`Case` through it. Adapters are imported by name on first use; an adapter module
that is not part of this checkout yet (another branch) is simply absent, any other import failure
is a bug and propagates.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from types import ModuleType

from iotaudit.errors import IotauditError

from ._types import Case, LibraryVerdict

__all__ = [
    "Case",
    "LibraryUnavailableError",
    "LibraryVerdict",
    "adapter_for",
    "unavailable",
    "verified_stacks",
    "verify_many",
]

# Library -> private module name. The order is the lookup order of adapter_for().
_ADAPTERS = {
    "openssl": "_openssl",
    "gnutls": "_gnutls",
    "bearssl": "_bearssl",
    "mbedtls": "_mbedtls",
    "wolfssl": "_wolfssl",
}

# Module name -> imported module, or None when the module is not in this checkout.
_LOADED: dict[str, ModuleType | None] = {}


class LibraryUnavailableError(IotauditError, RuntimeError):
    """Raised when a stack's real library is asked for a verdict but cannot be used on this machine.

    Attributes:
        stack_id: The stack whose library was asked for.
        reason: Why it cannot be used, naming the package to install.
    """

    def __init__(self, stack_id: str, reason: str) -> None:
        self.stack_id = stack_id
        self.reason = reason
        super().__init__(f"tls_stack {stack_id!r}: {reason}")


def _load(module_name: str) -> ModuleType | None:
    if module_name not in _LOADED:
        qualified = f"{__name__}.{module_name}"
        try:
            _LOADED[module_name] = importlib.import_module(qualified)
        except ModuleNotFoundError as err:
            if err.name != qualified:
                raise
            _LOADED[module_name] = None
    return _LOADED[module_name]


def _adapters() -> list[ModuleType]:
    return [module for name in _ADAPTERS.values() if (module := _load(name)) is not None]


def adapter_for(stack_id: str) -> ModuleType | None:
    """The adapter module that answers for ``stack_id``, or None if no adapter in this checkout does.

    Args:
        stack_id: A ``tls_stack`` id such as ``"openssl-3"``.

    Returns:
        The private adapter module (with ``STACK_IDS``, ``unavailable``, ``library_version``,
        ``verify_many``), whether or not its library is installed here.
    """
    for module in _adapters():
        if stack_id in module.STACK_IDS:
            return module
    return None


def unavailable(stack_id: str) -> str | None:
    """Why the real library of ``stack_id`` cannot be asked here, or None when it can.

    Args:
        stack_id: A ``tls_stack`` id.

    Returns:
        None if :func:`verify_many` will work for this stack; otherwise a sentence saying what is
        missing (the Debian or PyPI package to install), or that no real library backs the stack.
    """
    module = adapter_for(stack_id)
    if module is None:
        return f"no real-library adapter answers for tls_stack {stack_id!r}; its verdicts are modelled only"
    # Per stack, not per adapter: one adapter may answer for several builds (wolfssl-5 is a build of its own).
    return module.unavailable(stack_id)


def verify_many(stack_id: str, cases: Sequence[Case]) -> list[LibraryVerdict]:
    """Ask the real library of ``stack_id`` about every case, in one batch.

    Args:
        stack_id: A ``tls_stack`` id whose library is installed (see :func:`unavailable`).
        cases: The questions; each carries its own served chain, store, host and time.

    Returns:
        One :class:`LibraryVerdict` per case, in the order of ``cases``.

    Raises:
        LibraryUnavailableError: No adapter answers for the stack, or its library is missing here.
    """
    reason = unavailable(stack_id)
    if reason is not None:
        raise LibraryUnavailableError(stack_id, reason)
    module = adapter_for(stack_id)
    assert module is not None  # unavailable() returned None, so an adapter exists
    return module.verify_many(stack_id, cases)


def verified_stacks() -> dict[str, str]:
    """Every stack id whose real library can be asked on this machine, with that library's version.

    Returns:
        ``{stack_id: library_version}``, e.g. ``{"openssl-3": "OpenSSL 3.0.15 3 Sep 2024", ...}``.
    """
    found: dict[str, str] = {}
    for module in _adapters():
        for stack_id in module.STACK_IDS:
            if module.unavailable(stack_id) is None:
                found[stack_id] = module.library_version(stack_id)
    return found
