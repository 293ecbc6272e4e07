"""click's exception types, from typer's vendored copy (typer >= 0.2x) or the click package."""

import typer

try:
    from typer._click.exceptions import ClickException, UsageError
except ImportError:  # older typer depends on click itself
    from click.exceptions import ClickException, UsageError  # type: ignore[no-redef]

ExitTypes: tuple[type, ...] = (typer.Exit,)
AbortTypes: tuple[type, ...] = (typer.Abort,)
try:  # with a click-based typer these are click's; add them explicitly for older releases
    import click

    ExitTypes += (click.exceptions.Exit,)
    AbortTypes += (click.exceptions.Abort,)
except ImportError:
    pass
