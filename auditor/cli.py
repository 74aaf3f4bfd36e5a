"""The ``auditor`` command line. Each command parses options, calls the library, and writes files."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

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


@app.command()
def package(
    model: Annotated[Path, typer.Option("--model", help="A saved sequence classifier (folder).")],
    name: Annotated[str, typer.Option("--name", help="Model name on the server; the archive is <name>.mar.")],
    pruned: Annotated[
        str | None, typer.Option("--pruned", help="Prune these heads first: 'layer:head,head;layer:head' or a JSON file.")
    ] = None,
    backend: Annotated[Literal["torch", "onnx"], typer.Option(help="Predictions on PyTorch or ONNX Runtime.")] = "torch",
    store: Annotated[Path, typer.Option("--store", help="Model store folder.")] = Path("model_store"),
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Longest input in tokens.")] = 128,
    max_chars: Annotated[int, typer.Option("--max-chars", help="Longest text + text_pair in characters.")] = 4096,
    max_steps: Annotated[int, typer.Option("--max-steps", help="Most quadrature steps per explanation.")] = 20,
    max_batch: Annotated[int, typer.Option("--max-batch", help="Most inputs per forward pass.")] = 8,
) -> None:
    """Build a TorchServe model archive (.mar) for the classifier, optionally head-pruned and on ONNX Runtime."""
    from pydantic import ValidationError

    from auditor.errors import InputError
    from auditor.serving import ServingLimits, package_model, parse_heads, validation_message

    try:
        limits = ServingLimits(max_tokens=max_tokens, max_chars=max_chars, max_steps=max_steps, max_batch=max_batch)
    except ValidationError as error:
        raise InputError(validation_message(error)) from None
    heads = parse_heads(pruned) if pruned else None
    archive = package_model(model, name, store, heads, backend, limits)
    console.print(f"wrote {archive}", highlight=False)
