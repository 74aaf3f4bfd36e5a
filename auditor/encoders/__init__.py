"""A uniform, layer-level view of encoder sequence classifiers: one adapter per model family.

The attribution engine, head importance, head masks and pruning need to run the encoder from any layer
upwards, to run one layer with its attention probabilities given from outside, to scale single heads and
to read the classifier head. Every family of transformers lays these out differently; an
``EncoderClassifier`` subclass (one module in this package per family) holds everything the rest of
auditor knows about a family, and adding a family is adding one adapter here.

"Layer l" is the l-th application of a self-attention layer in execution order (the order of the model's
``output_attentions``); for ALBERT, whose layer weights are shared, several layers are one module.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn
from transformers import PreTrainedModel


class UnsupportedModelError(ValueError):
    """The model is not a supported encoder sequence classifier (or cannot be used as loaded)."""


@dataclass(frozen=True)
class LayerInputs:
    """What every encoder layer takes besides the hidden states, for one batch.

    ``per_example`` tensors have the example as their first dimension (always including the (batch, n) 0/1
    ``attention_mask``); ``shared`` values are the same for every example (relative positions, …).
    """

    per_example: dict[str, torch.Tensor]
    shared: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        return self.per_example[name] if name in self.per_example else self.shared[name]

    def select(self, rows: torch.Tensor) -> LayerInputs:
        """The inputs of examples ``rows`` (indices may repeat)."""
        return LayerInputs({k: v[rows] for k, v in self.per_example.items()}, self.shared)


class EncoderClassifier(ABC):
    """Layer-level access to one family's ``…ForSequenceClassification`` (eager attention only)."""

    model_types: ClassVar[tuple[str, ...]]
    #: whether ``model.prune_heads`` works for the family (physical pruning)
    prunable: ClassVar[bool] = True
    #: whether the model takes ``token_type_ids`` (segment ids)
    takes_segments: ClassVar[bool] = True

    def __init__(self, model: PreTrainedModel) -> None:
        self.model = model
        self.config = model.config
        self.base: nn.Module = getattr(model, model.base_model_prefix)
        self.layers: list[nn.Module] = self._layers()
        self.head_ids: list[list[int]] = [self._present_heads(i) for i in range(len(self.layers))]
        # while ``scale_heads`` is active: calls so far of each context module (by id) and the layers using it
        self._calls: dict[int, int] | None = None
        self._uses: dict[int, list[int]] = {}

    # --- what each family defines -------------------------------------------------------------------------

    @abstractmethod
    def _layers(self) -> list[nn.Module]:
        """The encoder layer module applied at each layer index (the same module may repeat)."""

    @abstractmethod
    def _module_heads(self, index: int) -> int:
        """The number of heads layer ``index``'s module computes now (after any pruning)."""

    @abstractmethod
    def layer_inputs(self, attention_mask: torch.Tensor, dtype: torch.dtype) -> LayerInputs:
        """The layer inputs other than hidden states for a right-padded (batch, n) 0/1 ``attention_mask``."""

    @abstractmethod
    def _forward(self, index: int, hidden: torch.Tensor, inputs: LayerInputs) -> torch.Tensor:
        """The unmodified encoder layer ``index`` (see ``layer_forward``)."""

    @abstractmethod
    def _forward_with_attention(self, index: int, hidden: torch.Tensor, inputs: LayerInputs, probs: torch.Tensor) -> torch.Tensor:
        """Layer ``index`` with ``probs`` as its attention probabilities (see ``layer_with_attention``)."""

    @abstractmethod
    def logits(self, sequence_output: torch.Tensor, inputs: LayerInputs) -> torch.Tensor:
        """Classification logits from the hidden states after the last layer (as the model computes them)."""

    @abstractmethod
    def context_module(self, index: int) -> nn.Module:
        """The module of layer ``index`` whose first argument is the (batch, n, heads·head_size) context
        ``concat_h(A_h V_h)``: scaling head h's slice there scales head h's attention probabilities."""

    # --- shared behaviour ------------------------------------------------------------------------------------

    def layer_forward(self, index: int, hidden: torch.Tensor, inputs: LayerInputs) -> torch.Tensor:
        """The unmodified encoder layer ``index``."""
        self._entering(index)
        return self._forward(index, hidden, inputs)

    def layer_with_attention(self, index: int, hidden: torch.Tensor, inputs: LayerInputs, probs: torch.Tensor) -> torch.Tensor:
        """Encoder layer ``index`` with its post-softmax attention probabilities replaced by ``probs``
        (batch, heads, n, n): the layer's own value projection, output projection, residuals, norms and
        feed-forward applied to ``probs @ V``."""
        self._entering(index)
        return self._forward_with_attention(index, hidden, inputs, probs)

    def run(self, **inputs: Any) -> Any:
        """The model's own forward pass (``model(**inputs)``); a family may override it to keep it exact."""
        return self.model(**inputs)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def num_heads(self) -> int:
        """Heads per layer before any pruning (the range of original head indices)."""
        return int(self.config.num_attention_heads)

    @property
    def num_labels(self) -> int:
        return int(self.config.num_labels)

    @property
    def intermediate_size(self) -> int:
        return int(self.config.intermediate_size)

    def pruned_heads(self) -> dict[int, list[int]]:
        """Original indices of the heads already pruned, per layer index (only layers that lost some)."""
        pruned = {i: sorted(set(range(self.num_heads)) - set(ids)) for i, ids in enumerate(self.head_ids)}
        return {i: heads for i, heads in pruned.items() if heads}

    def _config_pruned(self, key: int) -> set[int]:
        table = getattr(self.config, "pruned_heads", None) or {}
        return {int(h) for h in table.get(key, table.get(str(key), []))}

    def _present_heads(self, index: int) -> list[int]:
        ids = [h for h in range(self.num_heads) if h not in self._config_pruned(self._prune_key(index))]
        if self._module_heads(index) != len(ids):
            raise UnsupportedModelError(
                f"layer {index} has {self._module_heads(index)} heads but config.pruned_heads implies {len(ids)}"
            )
        return ids

    def weight_groups(self) -> list[list[int]]:
        """Layer indices grouped by the weights they share (one layer per group unless the family shares)."""
        groups: dict[int, list[int]] = {}
        for index in range(self.num_layers):
            groups.setdefault(self._prune_key(index), []).append(index)
        return list(groups.values())

    def _prune_key(self, index: int) -> int:
        """The key of layer ``index`` in ``config.pruned_heads`` and ``prune_heads``."""
        return index

    def prune_heads(self, model: PreTrainedModel, heads: dict[int, list[int]]) -> None:
        """Remove ``heads`` ({layer: original head indices}) from ``model`` (of this family) in place."""
        if not self.prunable:
            raise UnsupportedModelError(
                f"transformers cannot physically prune heads of {self.config.model_type} models; measure pruning "
                "with head masks instead (auditor curves, auditor.heads.head_mask)"
            )
        model.prune_heads(heads)

    @contextlib.contextmanager
    def scale_heads(self, mask: torch.Tensor) -> Iterator[None]:
        """Scale head h of layer l by ``mask[..., l, h]`` (original head indices) while inside.

        ``mask`` is (layers, heads) for the whole batch or (batch, layers, heads) per example. Head h's
        context slice A_h V_h is scaled where it enters the output projection (``context_module``), which is
        scaling its attention probabilities. A module shared by several layers (ALBERT) counts its calls:
        the k-th call since the model's forward began, or since ``layer_forward``/``layer_with_attention``
        of a layer, is that layer.
        """
        if mask.shape[-2:] != (self.num_layers, self.num_heads):
            raise ValueError(f"head mask must end in ({self.num_layers}, {self.num_heads}), got {tuple(mask.shape)}")
        if self._calls is not None:
            raise RuntimeError("scale_heads is already active on this encoder")
        uses: dict[int, list[int]] = {}
        modules: dict[int, nn.Module] = {}
        for index in range(self.num_layers):
            module = self.context_module(index)
            uses.setdefault(id(module), []).append(index)
            modules[id(module)] = module
        calls = {key: 0 for key in uses}

        def make_hook(key: int):  # noqa: ANN202 (a forward pre-hook)
            def scale(module: nn.Module, args: tuple) -> tuple:
                indices = uses[key]
                index = indices[calls[key] % len(indices)]
                calls[key] += 1
                layer_mask = mask[..., index, self.head_ids[index]]
                context, *rest = args
                batch, n, width = context.shape
                heads = layer_mask.shape[-1]
                factors = layer_mask[:, None, :, None] if layer_mask.dim() == 2 else layer_mask[None, None, :, None]
                scaled = (context.view(batch, n, heads, width // heads) * factors.to(context.dtype)).view(batch, n, width)
                return (scaled, *rest)

            return scale

        def restart(module: nn.Module, args: tuple, kwargs: dict) -> None:
            for key in calls:
                calls[key] = 0

        handles = [module.register_forward_pre_hook(make_hook(key)) for key, module in modules.items()]
        handles.append(self.model.register_forward_pre_hook(restart, with_kwargs=True))
        self._calls, self._uses = calls, uses
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()
            self._calls, self._uses = None, {}

    def _entering(self, index: int) -> None:
        """Tell an active ``scale_heads`` that layer ``index`` is about to run outside a model forward."""
        if self._calls is not None:
            key = id(self.context_module(index))
            self._calls[key] = self._uses[key].index(index)


def additive_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(batch, n) 0/1 mask → (batch, 1, 1, n) additive mask (0 for keys to attend, dtype's min otherwise)."""
    mask = attention_mask[:, None, None, :].to(dtype)
    return (1.0 - mask) * torch.finfo(dtype).min


def attend(probs: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """concat_h(A_h V_h): probs (batch, heads, n, n) times values (batch, n, heads·d) → (batch, n, heads·d)."""
    batch, n, width = values.shape
    heads = probs.shape[1]
    per_head = values.view(batch, n, heads, width // heads).transpose(1, 2)
    return torch.matmul(probs, per_head).transpose(1, 2).reshape(batch, n, width)


_ADAPTERS: dict[str, type[EncoderClassifier]] = {}


def register(adapter: type[EncoderClassifier]) -> type[EncoderClassifier]:
    """Class decorator: make ``adapter`` the view of every model type it lists."""
    for model_type in adapter.model_types:
        _ADAPTERS[model_type] = adapter
    return adapter


def supported_model_types() -> list[str]:
    return sorted(_ADAPTERS)


def encoder_for(model: PreTrainedModel) -> EncoderClassifier:
    """The family adapter of ``model``; UnsupportedModelError (one line) when there is none or the model was
    loaded with an attention implementation that does not expose attention probabilities."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    adapter = _ADAPTERS.get(model_type)  # type: ignore[arg-type]
    if adapter is None or not (hasattr(model, "classifier") and getattr(model, "base_model_prefix", None)):
        raise UnsupportedModelError(
            f"{type(model).__name__} (model_type={model_type!r}) is not supported; auditor works on encoder "
            f"sequence classifiers of type {', '.join(supported_model_types())}"
        )
    if getattr(config, "is_decoder", False):
        raise UnsupportedModelError("decoder (causal) configurations are not supported")
    implementation = getattr(config, "_attn_implementation", "eager") or "eager"
    if implementation != "eager":
        raise UnsupportedModelError(
            f"this {model_type} model uses attn_implementation={implementation!r}, which exposes no attention "
            "probabilities; load it with attn_implementation='eager' (auditor's load_classifier does)"
        )
    return adapter(model)


from auditor.encoders import albert, bert, deberta, distilbert, modernbert  # noqa: E402,F401 (register the families)
