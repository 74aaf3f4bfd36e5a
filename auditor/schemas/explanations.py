"""``POST /explanations`` and ``auditor explain``: options, the explanation, its layers, token pairs, word
importance and tree."""

from __future__ import annotations

import base64
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from auditor.quadrature import MAX_STEPS, QuadratureMethod
from auditor.schemas.common import ModelIdentity, RequestModel
from auditor.schemas.serving import Prediction, PredictionRequest


class ExplanationOptions(RequestModel):
    """What to compute for ``POST /explanations/{model}`` and ``auditor explain``."""

    target: Literal["predicted"] | int = "predicted"
    steps: int = Field(default=3, ge=1, le=MAX_STEPS, description="quadrature nodes of the attribution integral")
    method: QuadratureMethod = "gausslegendre"
    layers: list[int] | None = Field(default=None, description="encoder layers to attribute (None: all; −1 is the last)")
    top_k: int = Field(default=5, ge=0, description="token pairs reported per layer")
    include_matrices: bool = False
    include_tree: bool = True
    threshold: float = Field(default=0.4, gt=0, le=1, description="τ of the attribution tree")
    include_word_importance: bool = Field(default=False, description="report each word's attribution drawn on by all tokens (WordImportance)")


class ExplanationRequest(PredictionRequest):
    """Body of ``POST /explanations/{model}``: the input and the options."""

    options: ExplanationOptions = ExplanationOptions()


class TreeNode(BaseModel):
    """A token in the attribution tree, at the hidden-state ``layer`` where it enters the tree.

    Layers count hidden states: ``num_layers`` is the output of the last encoder layer (where [CLS] sits),
    and a token attached through an edge of encoder layer l (0-based) sits at ``layer`` l, the input of that
    encoder layer.
    """

    id: str
    layer: int
    token_index: int
    token: str


class TreeEdge(BaseModel):
    """Information flowing from ``source`` (the key token) to ``target`` (the query token) in encoder layer ``layer``.

    ``score`` is the normalised attribution S̃ (> the tree's threshold); ``attribution`` the raw head-summed one.
    """

    source: str
    target: str
    layer: int
    score: float
    attribution: float


class AttributionTree(BaseModel):
    """The attribution tree of Hao et al. (2021, Algorithm 1): nodes are (layer, token), rooted at [CLS]."""

    tokens: list[str]
    threshold: float
    num_layers: int
    nodes: list[TreeNode]
    edges: list[TreeEdge]


class TokenPair(BaseModel):
    """One entry of a layer's head-summed attribution matrix: how much ``query`` drawing on ``key`` mattered.

    ``score`` = Σ_h Attr_h(A^l)[query_index, key_index]; ``head`` is the (original) index of the head that
    holds the largest share of it and ``head_score`` that head's attribution.
    """

    query_index: int
    key_index: int
    query_token: str
    key_token: str
    score: float
    head: int
    head_score: float


class EncodedArray(BaseModel):
    """A float32 array in JSON: ``shape``, and ``data``, the base64 of its values in C order, little-endian
    (``numpy.frombuffer(base64.b64decode(data), "<f4").reshape(shape)``, or ``to_numpy()``).

    Lossless for float32, 5⅓ bytes per value, and of a size known before the values are: the answer limit of
    an explanation is decided before it is computed (``auditor.explain.explanation_size_bound``).
    """

    dtype: Literal["float32"] = "float32"
    shape: list[int]
    data: str

    @classmethod
    def from_numpy(cls, array: np.ndarray) -> EncodedArray:
        values = np.ascontiguousarray(array, dtype="<f4")
        return cls(shape=list(values.shape), data=base64.b64encode(values.tobytes()).decode("ascii"))

    def to_numpy(self) -> np.ndarray:
        return np.frombuffer(base64.b64decode(self.data), dtype="<f4").reshape(self.shape)

    def __array__(self, dtype: object = None, copy: object = None) -> np.ndarray:
        array = self.to_numpy()
        return array if dtype is None else array.astype(dtype)

    @staticmethod
    def encoded_length(values: int) -> int:
        """Characters of ``data`` for ``values`` float32 values."""
        return 4 * -(-4 * values // 3)


class LayerExplanation(BaseModel):
    """Attribution summary of one encoder layer (0-based ``layer``).

    ``delta`` is the completeness delta Σ Attr − (F(A) − F(0·A^l)); ``baseline_probability`` is F(0·A^l),
    the target probability with this layer's attention zeroed. ``matrices`` (only when requested) holds
    Attr_h per head in ``head_ids`` order: an array of shape (heads, tokens, tokens), rows the query token and
    columns the key token.
    """

    layer: int
    head_ids: list[int]
    delta: float
    baseline_probability: float
    top_pairs: list[TokenPair]
    matrices: EncodedArray | None = None


class WordImportance(BaseModel):
    """How much one word mattered to the target probability: the self-attention attribution of every token
    drawing on the word's pieces, over every layer and head, ``score`` = Σ_l Σ_h Σ_i Σ_{j ∈ word} Attr_h(A^l)[i, j]
    (``auditor.explain.word_importance``).

    Words are TextAttack's words of the segment (``auditor.triggers.word_spans``); ``index`` counts them
    from 0 in ``segment`` (0 = text, 1 = text_pair). A word cut off by truncation has no entry.
    """

    segment: Literal[0, 1]
    index: int = Field(ge=0)
    word: str
    score: float


class Explanation(BaseModel):
    """Self-attention attribution of one input: the prediction, and per layer which token interactions drove
    the ``target`` class probability."""

    model: ModelIdentity
    text: str
    text_pair: str | None = None
    prediction: Prediction
    target: int
    target_label: str
    target_probability: float
    tokens: list[str]
    method: QuadratureMethod
    steps: int
    layers: list[LayerExplanation]
    tree: AttributionTree | None = None
    word_importance: list[WordImportance] | None = None
