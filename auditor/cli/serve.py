"""``auditor package``: TorchServe model archives."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from pydantic import ValidationError

from auditor.cli.app import app, console
from auditor.errors import InputError, validation_message
from auditor.schemas import ServingLimits, ShadowSettings


@app.command()
def package(
    model: Annotated[Path, typer.Option("--model", help="A saved sequence classifier (folder).")],
    name: Annotated[str, typer.Option("--name", help="Model name on the server; the archive is <name>.mar.")],
    task: Annotated[
        Literal["single", "pair"], typer.Option("--task", help="Single sentences (a text_pair is refused) or sentence pairs (required).")
    ] = "single",
    pruned: Annotated[
        str | None, typer.Option("--pruned", help="Prune these heads first: 'layer:head,head;layer:head' or a JSON file.")
    ] = None,
    backend: Annotated[Literal["torch", "onnx"], typer.Option("--backend", help="Predictions on PyTorch or ONNX Runtime.")] = "torch",
    store: Annotated[Path, typer.Option("--store", help="Model store folder.")] = Path("model_store"),
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Longest input in tokens.")] = 128,
    max_chars: Annotated[int, typer.Option("--max-chars", help="Longest text + text_pair in characters.")] = 4096,
    max_steps: Annotated[int, typer.Option("--max-steps", help="Most quadrature steps per explanation.")] = 20,
    max_batch: Annotated[int, typer.Option("--max-batch", help="Most inputs per forward pass and per request.")] = 8,
    max_explanation_cost: Annotated[
        int, typer.Option("--max-explanation-cost", help="Most tokens × steps × layer passes of explanations per server-side batch.")
    ] = ServingLimits().max_explanation_cost,
    max_response_bytes: Annotated[
        int, typer.Option("--max-response-bytes", help="Largest answer (keep it below config.properties' max_response_size).")
    ] = ServingLimits().max_response_bytes,
    threads: Annotated[
        int | None, typer.Option("--threads", min=1, help="Intra-op threads of the worker (default: the runtime's).")
    ] = None,
    onnx_file: Annotated[
        Path | None,
        typer.Option("--onnx-file", help="An exported graph to serve (e.g. model.int8.onnx of auditor prune --int8) instead of exporting."),
    ] = None,
    explanation_slots: Annotated[
        int, typer.Option("--explanation-slots", min=1, help="Explanations computed at once by all the model's workers (keep below its workers).")
    ] = 1,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="The TorchServe configuration that will serve it: warn when its workers need more memory than this machine has "
                     "(default: the repository's config.properties)."),
    ] = None,
    niceness: Annotated[
        int, typer.Option("--niceness", min=0, max=19, help="Run the workers this much lower in priority (e.g. 10 for a model serving only as a shadow).")
    ] = 0,
    shadow: Annotated[
        str | None, typer.Option("--shadow", help="Replay sampled predictions on this model and record both answers (needs --shadow-db).")
    ] = None,
    shadow_url: Annotated[
        str, typer.Option("--shadow-url", help="Inference API serving the shadow (default: this machine's TorchServe).")
    ] = ShadowSettings.model_fields["url"].default,
    shadow_key_file: Annotated[
        Path | None, typer.Option("--shadow-key-file", help="key_file.json of the shadow's server (default: the serving TorchServe's).")
    ] = None,
    shadow_rate: Annotated[float, typer.Option("--shadow-rate", help="Fraction of prediction requests replayed on the shadow.")] = 1.0,
    shadow_db: Annotated[Path | None, typer.Option("--shadow-db", help="The comparisons database (SQLite) the workers append to.")] = None,
    shadow_store_texts: Annotated[
        bool, typer.Option("--shadow-store-texts", help="Keep the inputs' texts in the database (made mode 0600).")
    ] = False,
    shadow_max_rows: Annotated[
        int, typer.Option("--shadow-max-rows", help="Most comparisons kept; the oldest are deleted first.")
    ] = ShadowSettings.model_fields["max_rows"].default,
    shadow_max_age: Annotated[
        float | None, typer.Option("--shadow-max-age", help="Comparisons older than this many seconds are deleted.")
    ] = None,
) -> None:
    """Build a TorchServe model archive (.mar) for the classifier, optionally head-pruned and on ONNX Runtime."""
    from auditor.serving.archive import package_model, parse_heads
    from auditor.serving.memory import memory_warning
    from auditor.serving.torchserve import DEFAULT_CONFIG

    if config is not None and not config.is_file():
        raise InputError(f"--config {config}: not a file")

    try:
        limits = ServingLimits(
            max_tokens=max_tokens, max_chars=max_chars, max_steps=max_steps, max_batch=max_batch,
            max_explanation_cost=max_explanation_cost, max_response_bytes=max_response_bytes,
        )  # fmt: skip
    except ValidationError as error:
        raise InputError(validation_message(error)) from None
    replay = None
    if shadow is not None or shadow_db is not None:
        if shadow is None or shadow_db is None:
            missing = "'--shadow-db'" if shadow_db is None else "'--shadow'"
            raise typer.BadParameter("--shadow and --shadow-db go together: name the shadow model and the comparisons database", param_hint=missing)
        try:
            replay = ShadowSettings(
                model=shadow, url=shadow_url.rstrip("/"), key_file=None if shadow_key_file is None else str(shadow_key_file.resolve()),
                sample_rate=shadow_rate, database=str(shadow_db.resolve()), store_texts=shadow_store_texts, max_rows=shadow_max_rows,
                max_age_s=shadow_max_age,
            )  # fmt: skip
        except ValidationError as error:
            raise typer.BadParameter(validation_message(error), param_hint="'--shadow-*'") from None
    heads = parse_heads(pruned) if pruned else None
    archive = package_model(
        model, name, store, heads, backend, limits, threads=threads, onnx_file=onnx_file, task=task, explanation_slots=explanation_slots,
        shadow=replay, niceness=niceness,
    )
    console.print(f"wrote {archive}", highlight=False)
    served_by = config or DEFAULT_CONFIG
    warning = memory_warning(served_by) if served_by.is_file() else None
    if warning is not None:
        console.print(f"warning: {warning}", highlight=False)
