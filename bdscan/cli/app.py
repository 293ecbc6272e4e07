"""The ``bdscan`` Typer app; one error-to-exit-code path for every command."""

from __future__ import annotations

import os
import sys
import warnings

import typer
from typer.core import TyperGroup

import bdscan
from bdscan.cli._compat import AbortTypes, ClickException, ExitTypes, UsageError
from bdscan.errors import BdscanError, ExitCode, exit_code_for


class BdscanGroup(TyperGroup):
    """Runs a command and turns whatever it raises into one stderr line and a documented exit code."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        code = run_guarded(
            lambda: super(BdscanGroup, self).main(
                args=args, prog_name=prog_name or "bdscan", complete_var=complete_var, standalone_mode=False, **extra
            )
        )
        if standalone_mode:
            sys.exit(int(code))
        return int(code)


def _one_line_warnings(fallback):
    """bdscan's own warnings (e.g. a broken plugin) as one stderr line; other libraries' keep their format."""

    def show(message, category, *args, **kwargs) -> None:
        if category.__module__.split(".")[0] == "bdscan":
            print(f"bdscan: warning: {message}", file=sys.stderr)
        else:
            fallback(message, category, *args, **kwargs)

    return show


def run_guarded(fn) -> int:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.showwarning = _one_line_warnings(warnings.showwarning)
            rv = fn()
        code = rv if isinstance(rv, int) else ExitCode.OK
        if code == ExitCode.INTERRUPTED:  # typer turns Ctrl-C into Exit(130) and returns it when not standalone
            print("bdscan: interrupted", file=sys.stderr)
        return code
    except ExitTypes as exc:
        if exc.exit_code == ExitCode.INTERRUPTED:
            print("bdscan: interrupted", file=sys.stderr)
        return exc.exit_code
    except UsageError as exc:
        exc.show()
        return exit_code_for(exc)
    except ClickException as exc:
        exc.show()
        return ExitCode.USAGE
    except (*AbortTypes, KeyboardInterrupt):
        print("bdscan: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except BdscanError as exc:
        print(f"bdscan: error: {exc}", file=sys.stderr)
        return exit_code_for(exc)
    except MemoryError:
        print("bdscan: error: out of memory", file=sys.stderr)
        return ExitCode.RUNTIME
    except Exception as exc:  # last line of defence: one line, never a traceback
        if os.environ.get("BDSCAN_DEBUG"):
            raise
        msg = str(exc).splitlines()[0][:300] if str(exc) else ""
        print(f"bdscan: internal error: {type(exc).__name__}: {msg} (set BDSCAN_DEBUG=1 for details)", file=sys.stderr)
        return ExitCode.RUNTIME


app = typer.Typer(
    cls=BdscanGroup,
    name="bdscan",
    help="Find and remove backdoors from image classifiers (safetensors or ONNX).\n\n"
    "Exit codes: 0 clean / nothing found, 1 backdoor found or not removed, 2 runtime error, "
    "3 nothing scanned, 4 usage error.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"bdscan {bdscan.__version__}")
        raise typer.Exit(0)


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """bdscan: backdoor scanner and cleaner for image classifiers."""


def _register() -> None:
    from bdscan.cli import clean_cmd, export_cmd, inspect_cmd, report_cmd, scan_cmd  # noqa: F401


_register()


def main() -> None:
    from bdscan.allocator import keep_freed_memory

    keep_freed_memory()
    typer.main.get_command(app).main(prog_name="bdscan")
