"""TorchServe model archives: the handler's settings (the ``handler:`` section of model-config.yaml), and
``auditor package`` — prune, export to ONNX, and build ``<name>.mar`` with torch-model-archiver, the stored
weights in the source checkpoint's dtype.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import yaml
from pydantic import ValidationError

from auditor.errors import AuditorError, InputError, ModelLoadError, validation_message
from auditor.schemas import Backend, HandlerSettings, ServingLimits, ShadowSettings, Task

if TYPE_CHECKING:
    import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
HANDLER_FILE = REPO_ROOT / "handlers" / "classifier_handler.py"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
MODEL_FILES = ("config.json", *WEIGHT_FILES, "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "vocab.txt", "merges.txt", "vocab.json", "added_tokens.json")
ONNX_FILE = HandlerSettings().onnx_file


def handler_settings(model_yaml_config: Mapping[str, object] | None) -> HandlerSettings:
    """The ``handler:`` section of an archive's model-config.yaml (defaults when absent)."""
    section = (model_yaml_config or {}).get("handler") or {}
    try:
        return HandlerSettings.model_validate(section)
    except ValidationError as error:
        raise ModelLoadError(f"invalid handler section in model-config.yaml: {validation_message(error)}") from None


def build_archive(
    model_dir: Path,
    name: str,
    model_store: Path,
    backend: Backend = "torch",
    onnx_file: Path | None = None,
    limits: ServingLimits | None = None,
    archive_format: Literal["default", "zip-store"] = "default",
    threads: int | None = None,
    task: Task = "single",
    explanation_slots: int = 1,
    shadow: ShadowSettings | None = None,
    niceness: int = 0,
) -> Path:
    """Package a saved classifier as ``model_store/<name>.mar`` with torch-model-archiver.

    The archive holds the model directory's files (config, weights, tokenizer), the handler, and a
    model-config.yaml whose ``handler:`` section names the backend and limits (and the ``shadow`` model its
    predictions are compared with, ``auditor.live.shadow``). An ONNX archive holds
    ``onnx_file`` as model.onnx instead of the PyTorch weights, and onnx_weights.json, where the graph holds
    each of them (``auditor.onnx_weights``: attribution runs on the graph's weights; InputError when the graph
    does not hold this model's). Batching and worker counts are left to the server's config.properties.
    """
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise ModelLoadError(f"{model_dir} is not a saved model: it has no config.json")
    if backend == "onnx" and (onnx_file is None or not Path(onnx_file).is_file()):
        raise InputError(f"the onnx backend needs an exported .onnx file, got {onnx_file}")
    if backend == "torch" and onnx_file is not None:
        raise InputError("an .onnx file is only used with the onnx backend")
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        raise InputError(f"archive name must be letters, digits, - and _, got {name!r}")
    model_store = Path(model_store)
    model_store.mkdir(parents=True, exist_ok=True)
    try:
        settings = HandlerSettings(task=task, backend=backend, threads=threads, explanation_slots=explanation_slots, limits=limits or ServingLimits(),
                                   shadow=shadow, niceness=niceness)  # fmt: skip
    except ValidationError as error:
        raise InputError(validation_message(error)) from None
    with tempfile.TemporaryDirectory(prefix="auditor-archive-") as scratch:
        staging = Path(scratch) / "files"
        staging.mkdir()
        for file_name in MODEL_FILES:
            if (model_dir / file_name).is_file() and not (backend == "onnx" and file_name in WEIGHT_FILES):
                shutil.copy2(model_dir / file_name, staging / file_name)
        if backend == "onnx":
            from auditor.models import load_classifier
            from auditor.onnx_weights import WEIGHT_MAP_FILE, weight_map

            weights = weight_map(load_classifier(model_dir, device="cpu"), onnx_file)
            (staging / WEIGHT_MAP_FILE).write_text(weights.model_dump_json(indent=1) + "\n")
            shutil.copy2(onnx_file, staging / ONNX_FILE)
            external = Path(f"{onnx_file}.data")
            if external.is_file():
                shutil.copy2(external, staging / f"{ONNX_FILE}.data")
        config_file = Path(scratch) / "model-config.yaml"
        config_file.write_text(yaml.safe_dump({"handler": settings.model_dump()}, sort_keys=False))
        command = [
            sys.executable, "-m", "model_archiver.model_packaging",
            "--model-name", name, "--version", "1.0", "--handler", str(HANDLER_FILE),
            "--extra-files", str(staging), "--config-file", str(config_file),
            "--export-path", str(model_store), "--archive-format", archive_format, "--force",
        ]  # fmt: skip
        # the archiver stages files under $TMPDIR/<name>: give it its own TMPDIR
        environment = {**os.environ, "TMPDIR": scratch, "TEMP": scratch}
        done = subprocess.run(command, capture_output=True, text=True, env=environment)
        if done.returncode != 0:
            raise AuditorError(f"torch-model-archiver failed: {(done.stderr or done.stdout).strip()[-2000:]}")
    return model_store / f"{name}.mar"


def checkpoint_dtype(model_dir: Path) -> torch.dtype:
    """The floating-point dtype of a saved model's weights (the safetensors header, else the first floating
    tensor of pytorch_model.bin; float32 when there is neither)."""
    import torch

    weights = Path(model_dir) / "model.safetensors"
    if weights.is_file():
        from safetensors import safe_open

        with safe_open(str(weights), framework="pt") as stored:
            for name in stored.keys():
                tensor = stored.get_slice(name)
                dtype = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64}.get(tensor.get_dtype())
                if dtype is not None:
                    return dtype
    legacy = Path(model_dir) / "pytorch_model.bin"
    if legacy.is_file():
        state = torch.load(legacy, map_location="cpu", weights_only=True)
        return next((value.dtype for value in state.values() if value.is_floating_point()), torch.float32)
    return torch.float32


def parse_heads(spec: str) -> dict[int, list[int]]:
    """Heads to prune, as ``layer:head,head;layer:head`` (e.g. ``0:1,2;5:0``) or a JSON file mapping layer
    to a list of heads (``{"0": [1, 2], "5": [0]}``). InputError when it is neither."""
    path = Path(spec)
    try:
        if path.suffix == ".json" or path.is_file():
            mapping = json.loads(path.read_text())
            if not isinstance(mapping, dict):
                raise ValueError("the JSON file must map layers to lists of heads")
            return {int(layer): sorted({int(head) for head in heads}) for layer, heads in mapping.items()}
        heads: dict[int, list[int]] = {}
        for part in filter(None, (piece.strip() for piece in spec.split(";"))):
            layer, _, listed = part.partition(":")
            heads[int(layer)] = sorted({int(head) for head in listed.split(",") if head.strip()})
        if not heads or not all(heads.values()):
            raise ValueError("name at least one head per layer")
        return heads
    except (OSError, ValueError, TypeError, json.JSONDecodeError) as error:
        raise InputError(f"cannot read heads to prune from {spec!r} (want e.g. 0:1,2;5:0 or a JSON file): {error}") from None


def package_model(
    model_dir: Path,
    name: str,
    model_store: Path,
    pruned: Mapping[int, Sequence[int]] | None = None,
    backend: Backend = "torch",
    limits: ServingLimits | None = None,
    archive_format: Literal["default", "zip-store"] = "default",
    threads: int | None = None,
    onnx_file: Path | None = None,
    task: Task = "single",
    explanation_slots: int = 1,
    shadow: ShadowSettings | None = None,
    niceness: int = 0,
) -> Path:
    """``auditor package``: prune the model's heads if asked, export it to ONNX for the onnx backend (unless
    ``onnx_file`` names a graph exported already, e.g. ``auditor prune --int8``'s model.int8.onnx), and
    build ``model_store/<name>.mar`` (see ``build_archive``)."""
    from auditor.export import export_onnx
    from auditor.models import load_classifier
    from auditor.pruning import prune_model

    if pruned and onnx_file is not None:
        raise InputError("an exported .onnx file is the graph of the model as given: prune first, then export")
    with tempfile.TemporaryDirectory(prefix="auditor-package-") as scratch:
        source = Path(model_dir)
        if pruned:  # the pruned copy is stored in the dtype of the source checkpoint (float16 stays float16)
            classifier = load_classifier(source, device="cpu", dtype=checkpoint_dtype(source))
            source = prune_model(classifier, {int(k): list(v) for k, v in pruned.items()}, Path(scratch) / "pruned")
        if backend == "onnx" and onnx_file is None:
            onnx_file = export_onnx(load_classifier(source, device="cpu"), Path(scratch) / ONNX_FILE)
        return build_archive(source, name, model_store, backend, onnx_file, limits, archive_format, threads, task, explanation_slots, shadow, niceness)
