"""Loading sequence classifiers and turning texts into model inputs, with clear errors for bad input."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BatchEncoding, PreTrainedModel
from transformers import PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from auditor.encoders import UnsupportedModelError, encoder_for
from auditor.errors import DataError, InputError, ModelLoadError
from auditor.schemas import ModelIdentity

if TYPE_CHECKING:
    from auditor.data import Example


@dataclass
class Classifier:
    """A loaded sequence classifier with its tokenizer."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    identity: ModelIdentity

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def labels(self) -> list[str]:
        return self.identity.labels

    @property
    def max_length(self) -> int:
        """The longest input in tokens, special tokens included."""
        limit = int(getattr(self.model.config, "max_position_embeddings", 512))
        if self.identity.model_type in ("roberta", "xlm-roberta", "camembert"):
            limit -= 2  # RoBERTa positions start after the padding index
        tokenizer_limit = getattr(self.tokenizer, "model_max_length", limit) or limit
        return min(limit, int(tokenizer_limit)) if tokenizer_limit < 10**9 else limit

    def encode(
        self,
        texts: Sequence[str],
        text_pairs: Sequence[str | None] | None = None,
        truncate: bool = False,
        max_length: int | None = None,
    ) -> BatchEncoding:
        """Tokenize a batch (right-padded tensors on the model's device).

        Raises InputError for an empty text, a missing pair on a partly paired batch, or an input longer
        than ``max_length`` (default: the model's maximum) unless ``truncate`` is set.
        """
        limit = min(max_length or self.max_length, self.max_length)
        if not texts:
            raise InputError("no input text given")
        pairs = list(text_pairs) if text_pairs is not None else [None] * len(texts)
        if len(pairs) != len(texts):
            raise InputError(f"{len(texts)} texts but {len(pairs)} text pairs")
        for i, (text, pair) in enumerate(zip(texts, pairs)):
            if not isinstance(text, str) or not text.strip():
                raise InputError(f"input {i}: text is empty")
            if pair is not None and (not isinstance(pair, str) or not pair.strip()):
                raise InputError(f"input {i}: text_pair is empty")
        if any(p is None for p in pairs) and any(p is not None for p in pairs):
            raise InputError("either every input has a text_pair or none has")
        second = None if pairs[0] is None else pairs
        if not truncate:
            with quiet_transformers():
                lengths = [len(ids) for ids in self.tokenizer(list(texts), second, truncation=False)["input_ids"]]
            too_long = [(i, n) for i, n in enumerate(lengths) if n > limit]
            if too_long:
                i, n = too_long[0]
                raise InputError(f"input {i} has {n} tokens, more than the limit of {limit}; shorten it or pass truncate")
        options = {"truncation": "longest_first", "max_length": limit} if truncate else {}
        encoded = self.tokenizer(list(texts), second, padding=True, return_tensors="pt", **options)
        if not encoder_for(self.model).takes_segments:
            encoded.pop("token_type_ids", None)
        return encoded.to(self.device)

    def tokens(self, input_ids: torch.Tensor) -> list[str]:
        return self.tokenizer.convert_ids_to_tokens(input_ids.tolist())


NO_TOKENS = "produces no token of the model's tokenizer (the model would see only its special tokens); send visible text"
"""Why a text is refused when ``tokenless_fields`` names it."""


def tokenless_fields(
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    text_pairs: Sequence[str | None] | None = None,
    encoded: BatchEncoding | None = None,
) -> list[tuple[int, str]]:
    """``(i, "text")`` or ``(i, "text_pair")`` for each text from which ``tokenizer`` produces no token of its own,
    so that the model would see nothing of it but the special tokens added around it ([CLS], [SEP]). Examples:
    U+FE0F (a variation selector), U+0301 (a lone combining accent), U+E000 (private use), U+FFFD; the
    tokenizer's normalizer drops them. A text that becomes an unknown token ([UNK]) does produce a token.

    ``encoded``: the tokenizer's output for exactly these texts and pairs, when the caller has it; a fast
    tokenizer's ``sequence_ids`` then tell which segment each token came from, without tokenizing again."""
    pairs = list(text_pairs) if text_pairs is not None else [None] * len(texts)
    found = []
    if encoded is not None and encoded.is_fast:
        for i, pair in enumerate(pairs):
            segments = set(encoded.sequence_ids(i))
            found += [(i, name) for segment, name in ((0, "text"), (1, "text_pair")) if segment not in segments and (segment == 0 or pair is not None)]
        return found
    with quiet_transformers():
        lengths = [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]
        given = [i for i, pair in enumerate(pairs) if pair is not None]
        pair_lengths = [len(ids) for ids in tokenizer([pairs[i] for i in given], add_special_tokens=False)["input_ids"]] if given else []
    found = [(i, "text") for i, length in enumerate(lengths) if length == 0]
    found += [(i, "text_pair") for i, length in zip(given, pair_lengths) if length == 0]
    return sorted(found)


def check_inputs_have_tokens(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], text_pairs: Sequence[str | None] | None = None) -> None:
    """InputError naming the first input (``input i``, 0-based) with a text or text_pair that is empty (as
    ``Classifier.encode`` says) or from which ``tokenizer`` produces no token (``tokenless_fields``)."""
    for i, name in tokenless_fields(tokenizer, texts, text_pairs)[:1]:
        given = (texts if name == "text" else text_pairs or [])[i]
        raise InputError(f"input {i}: {name} is empty" if not given.strip() else f"input {i}: {name} {NO_TOKENS}")


def check_examples_have_tokens(tokenizer: PreTrainedTokenizerBase, examples: Sequence[Example], source: str) -> None:
    """DataError naming the first row of ``examples`` (1-based, in the data's order) with a text or text_pair
    from which ``tokenizer`` produces no token (``tokenless_fields``)."""
    texts = [example.text for example in examples]
    pairs = [example.text_pair for example in examples]
    for i, name in tokenless_fields(tokenizer, texts, pairs)[:1]:
        raise DataError(f"{source}: row {i + 1}: {name} {NO_TOKENS}")


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' warnings (long-input and loading notices) for the duration."""
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)


TOKENIZER_NOTICES = ("sequence-length-is-longer-than-the-specified-maximum", "Asking-to-pad-a-fast-tokenizer")
"""Notices a tokenizer logs once: an input longer than the model's limit, and padding ids tokenized already."""


def mark_tokenizer_notices_shown(tokenizer: PreTrainedTokenizerBase) -> None:
    """Mark the tokenizer's once-only notices (``TOKENIZER_NOTICES``) as given, for a caller that checks lengths
    itself and pads ids it tokenized: cheaper per call than ``quiet_transformers``, which resets every logger's
    cache (about 1 ms, a seventh of a served ONNX prediction)."""
    notices = getattr(tokenizer, "deprecation_warnings", None)
    if isinstance(notices, dict):
        notices.update(dict.fromkeys(TOKENIZER_NOTICES, True))


def weights_digest(directory: Path) -> str:
    """SHA-256 over the weight files of a saved model (first 16 hex digits)."""
    digest = hashlib.sha256()
    files = sorted(p for p in directory.iterdir() if p.suffix in (".safetensors", ".bin") or p.name == "config.json")
    for path in files:
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def identify(model: PreTrainedModel, name: str, weights_sha256: str) -> ModelIdentity:
    config = model.config
    encoder = encoder_for(model)
    return ModelIdentity(
        name=name,
        model_type=config.model_type,
        weights_sha256=weights_sha256,
        num_layers=encoder.num_layers,
        num_heads=encoder.num_heads,
        labels=[config.id2label[i] for i in range(config.num_labels)],
        pruned_heads=encoder.pruned_heads(),
    )


def load_classifier(
    name_or_path: str | Path,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> Classifier:
    """Load an encoder sequence classifier of a supported family (``auditor.encoders``) and its tokenizer
    from a folder or a hub name, always with eager attention (the only implementation that exposes the
    attention probabilities attribution scales; sdpa and flash kernels are never used, so numbers never
    depend on them).

    ``device`` defaults to CUDA when available. Raises ModelLoadError with a readable message.
    """
    text = str(name_or_path)
    path = Path(text).expanduser()
    looks_local = path.exists() or text.startswith((".", "/", "~")) or text.count("/") > 1
    if looks_local and not path.is_dir():
        raise ModelLoadError(f"model directory not found: {text}")
    if looks_local and not (path / "config.json").is_file():
        raise ModelLoadError(f"{text} is not a saved model: it has no config.json")
    source = str(path if looks_local else text)
    try:
        with quiet_transformers():
            model = AutoModelForSequenceClassification.from_pretrained(source, attn_implementation="eager")
            tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError, KeyError) as error:
        raise ModelLoadError(f"cannot load a sequence classifier from {text}: {error}") from None
    digest = weights_digest(path) if looks_local else hashlib.sha256(text.encode()).hexdigest()[:16]
    return as_classifier(model, tokenizer, path.name if looks_local else text, digest, device, dtype)


def as_classifier(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    name: str,
    weights_sha256: str,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> Classifier:
    """A loaded model (eager attention) and its tokenizer as a Classifier, in eval mode on ``device`` (default:
    CUDA when available) in ``dtype``. ModelLoadError for a family ``auditor.encoders`` does not support."""
    try:
        encoder_for(model)
    except UnsupportedModelError as error:
        raise ModelLoadError(str(error)) from None
    target = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device=target, dtype=dtype).eval()
    return Classifier(model, tokenizer, identify(model, name, weights_sha256))
