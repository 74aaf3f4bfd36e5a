"""Option types shared by several commands (one typer style: ``Annotated``) and the parsers of their values."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from auditor.errors import InputError
from auditor.quadrature import MAX_STEPS, QUADRATURE_METHODS

if TYPE_CHECKING:
    from auditor.distributed import RayPool

ModelPath = Annotated[str, typer.Option("--model", help="A saved sequence classifier (folder).")]
Steps = Annotated[
    int, typer.Option("--steps", min=1, max=MAX_STEPS, help=f"Quadrature nodes of the attribution integral (at most {MAX_STEPS}).")
]
Method = Annotated[str, typer.Option("--method", help="Quadrature rule: " + ", ".join(QUADRATURE_METHODS) + ".")]
Seed = Annotated[int, typer.Option("--seed", help="Seed of everything random (baselines, sampling).")]
CacheDir = Annotated[Path | None, typer.Option("--cache-dir", help="Importance cache (default ~/.cache/auditor/heads).")]
NoCache = Annotated[bool, typer.Option("--no-cache", help="Always recompute importances, store nothing.")]
AllowEmptyLayers = Annotated[bool, typer.Option("--allow-empty-layers", help="Allow masking every head of a layer.")]
Token = Annotated[str | None, typer.Option("--token", envvar="AUDITOR_TOKEN", help="Inference key for endpoints.")]
EndpointTokenizer = Annotated[
    str | None,
    typer.Option("--tokenizer", help="The endpoint model's tokenizer (directory or hub name), for the 'tokenedit' transformation."),
]
def output_file(value: Path | None) -> Path | None:
    """A file to write: not an existing folder (checked before any work)."""
    if value is not None and value.is_dir():
        raise typer.BadParameter(f"{value} is a folder: give the name of a file to write")
    return value


def output_folder(value: Path | None) -> Path | None:
    """A folder to write files into: not an existing file (checked before any work)."""
    if value is not None and value.exists() and not value.is_dir():
        raise typer.BadParameter(f"{value} is a file: give a folder to write into")
    return value


JUnit = Annotated[
    Path | None,
    typer.Option(
        "--junit", callback=output_file, help="Also write the results as JUnit XML (one test case per example and attack) for CI test reports."
    ),
]
MaxDrop = Annotated[
    float,
    typer.Option("--max-drop", min=0.0, max=1.0, help="Largest drop in accuracy (a fraction) that is not a regression (default: any drop is)."),
]


def _significance_level(value: float) -> float:
    if not 0 < value < 1:
        raise typer.BadParameter(f"a significance level between 0 and 1 (exclusive), got {value:g}")
    return value


Alpha = Annotated[
    float,
    typer.Option("--alpha", callback=_significance_level, help="Significance level of the exact McNemar test of a drop."),
]
Correction = Annotated[
    Literal["none", "holm"],
    typer.Option(
        "--correction",
        help="'holm': Holm's step-down over clean accuracy and every attack, so that a release that changed nothing fails "
        "with probability at most --alpha; 'none': each measure tested at --alpha on its own.",
    ),
]
InputsPerRequest = Annotated[
    int,
    typer.Option("--inputs-per-request", min=1, help='Inputs per request to an endpoint ({"inputs": [...]}, at most its max_batch); 1 = one each.'),
]


def _ray_address(value: str | None) -> str | None:
    """Checked before any work starts; Ray is imported only when the option is given."""
    if value is None:
        return None
    try:
        from auditor.distributed import check_address
    except ImportError:
        raise typer.BadParameter("needs Ray: pip install 'auditor[ray]'") from None
    try:
        return check_address(value)
    except InputError as error:
        raise typer.BadParameter(str(error)) from None


RayAddress = Annotated[
    str | None,
    typer.Option(
        "--ray",
        callback=_ray_address,
        help="Run on Ray: 'local' (a cluster on this machine), 'auto' (join the one 'ray start' runs here) or ray://HOST:PORT.",
    ),
]
Workers = Annotated[int | None, typer.Option("--workers", min=1, help="Ray actors (with --ray; default one per CPU of the cluster).")]


def ray_pool(address: str | None, workers: int | None) -> contextlib.AbstractContextManager[RayPool | None]:
    """The Ray pool for ``--ray``/``--workers`` (entered, it connects), or a context giving None without ``--ray``."""
    if address is None:
        if workers is not None:
            raise InputError("--workers needs --ray (local, auto or ray://HOST:PORT)")
        return contextlib.nullcontext(None)
    from auditor.distributed import RayPool

    return RayPool(address, workers)


def parse_target(value: str) -> str | int:
    """'predicted' or a class index (validated against the model later)."""
    if value == "predicted":
        return value
    try:
        return int(value)
    except ValueError:
        raise InputError(f"--target must be 'predicted' or a class index, got {value!r}") from None


def parse_layers(value: str | None) -> list[int] | None:
    """'0,1,5' → [0, 1, 5]."""
    if value is None:
        return None
    try:
        return [int(part) for part in value.split(",")]
    except ValueError:
        raise InputError(f"--layers must be comma-separated layer indices such as 0,1,5, got {value!r}") from None


def parse_fractions(value: str) -> tuple[float, ...]:
    """'0,0.1,0.5' → (0.0, 0.1, 0.5)."""
    try:
        return tuple(float(part) for part in value.split(","))
    except ValueError:
        raise InputError(f"--fractions must be comma-separated numbers, got {value!r}") from None


def read_text_file(path: Path, option: str) -> str:
    """The UTF-8 text of ``path``, or a one-line error naming ``option`` (missing, a folder, unreadable, not UTF-8)."""
    if not path.is_file():
        raise InputError(f"{option} {path}: no such file" if not path.exists() else f"{option} {path}: not a file")
    try:
        return path.read_bytes().decode("utf-8")
    except OSError as error:
        raise InputError(f"{option} {path}: cannot read it ({error.strerror})") from None
    except UnicodeDecodeError as error:
        raise InputError(f"{option} {path}: not UTF-8 text (byte {error.start}: {error.reason})") from None
