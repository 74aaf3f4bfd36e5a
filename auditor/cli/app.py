"""The ``auditor`` typer application and its entry point: user errors are one line and exit status 2."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from auditor.errors import AuditorError

if TYPE_CHECKING:
    from auditor.ci import Annotation

app = typer.Typer(
    name="auditor",
    help="Audit Transformer text classifiers with self-attention attribution.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(stderr=True, soft_wrap=True)  # an error stays one line however long
output = Console(highlight=False, soft_wrap=True)

# typer >= 0.29 carries its own copy of click, whose exceptions are not the standalone click package's;
# the base class of its usage errors is found through typer's own re-export, whatever click it uses.
_CLICK_EXCEPTION: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def close_gate(markdown: str, annotations: list[Annotation]) -> int:
    """Publish the summary and annotations to GitHub (when running there), print each failure as a
    ``fail:`` line, and return the exit status: 1 when any annotation is an error, else 0."""
    from auditor.ci import publish_to_github

    publish_to_github(markdown, annotations)
    failures = [a for a in annotations if a.level == "error"]
    for failure in failures:
        console.print(f"[bold red]fail:[/] {failure.title}: {failure.message}", highlight=False)
    return 1 if failures else 0


def usage_error_line(error: Exception, argv: list[str]) -> str:
    """``error: <message> (see 'auditor <command> --help')`` for a click/typer usage error."""
    message = " ".join(error.format_message().split())  # type: ignore[attr-defined]
    command = next((word for word in argv if not word.startswith("-")), None)
    names = {(c.name or (c.callback.__name__ if c.callback else "")).replace("_", "-") for c in app.registered_commands}
    known = command in names
    hint = f"auditor {command} --help" if known else "auditor --help"
    return f"error: {message} (see '{hint}')"


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors print one line and exit with status 2, never a traceback."""
    arguments = sys.argv[1:] if argv is None else argv
    try:
        exit_code = app(args=arguments, prog_name="auditor", standalone_mode=False)
        if isinstance(exit_code, int) and exit_code:
            sys.exit(exit_code)
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
    except _CLICK_EXCEPTION as error:
        console.print(usage_error_line(error, arguments), highlight=False, markup=False)
        sys.exit(2)
