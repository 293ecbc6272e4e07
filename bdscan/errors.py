"""Error types, one per subsystem, and the one table of exit codes."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Process exit codes; the README's table mirrors this enum."""

    OK = 0  # clean / nothing found / success
    FOUND = 1  # scan: backdoor suspected; clean: backdoor could not be removed
    RUNTIME = 2  # bad input file, failed export, anything that broke at run time
    NOTHING_SCANNED = 3  # no supported model among the inputs
    USAGE = 4  # wrong flags, unknown architecture, bad option values
    INTERRUPTED = 130  # Ctrl-C


class BdscanError(Exception):
    """Base of every error bdscan reports as one line."""

    exit_code: ExitCode = ExitCode.RUNTIME


class UsageError(BdscanError):
    exit_code = ExitCode.USAGE


class ArchitectureError(UsageError):
    """Unknown or unbuildable architecture."""


class ModelLoadError(BdscanError):
    """A model file that cannot be read, parsed or matched to its architecture."""


class UnsupportedModelError(ModelLoadError):
    """A file that is not a model format bdscan reads (pickle, unknown suffix)."""

    exit_code = ExitCode.NOTHING_SCANNED


class ExportError(BdscanError):
    """Export failed, or the exported model disagrees with the source."""


class DataError(BdscanError):
    """Samples folder or image problems."""


class DeviceError(BdscanError):
    """Requested device is not available."""


class OutputError(BdscanError):
    """Output folder or file cannot be written."""


class ReportError(BdscanError):
    """A saved report cannot be read or rendered."""


def _usage_error_types() -> tuple[type, ...]:
    """click's UsageError: vendored inside newer typer, the click package in older ones."""
    types: list[type] = []
    try:
        from typer._click.exceptions import UsageError as VendoredUsage

        types.append(VendoredUsage)
    except ImportError:
        pass
    try:
        from click.exceptions import UsageError as ClickUsage

        types.append(ClickUsage)
    except ImportError:
        pass
    return tuple(types)


def exit_code_for(exc: BaseException) -> ExitCode:
    """The one mapping from an exception to the process exit code."""
    if isinstance(exc, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    if isinstance(exc, BdscanError):
        return exc.exit_code
    if isinstance(exc, _usage_error_types()):  # click reports usage errors as 2; the contract says 4
        return ExitCode.USAGE
    return ExitCode.RUNTIME
