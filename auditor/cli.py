"""The ``auditor`` command line. Each command parses options, calls the library, and writes files."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from auditor.errors import AuditorError

app = typer.Typer(
    name="auditor",
    help="Audit Transformer text classifiers with self-attention attribution.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(stderr=True)


def main() -> None:
    """Entry point: user errors print one line and exit with status 2, never a traceback."""
    try:
        app(standalone_mode=False)
    except AuditorError as error:
        console.print(f"[bold red]error:[/] {error}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except typer.Abort:
        sys.exit(1)
    except Exception as error:  # click's usage errors
        import click

        if isinstance(error, click.ClickException):
            error.show()
            sys.exit(error.exit_code)
        raise
