"""A self-contained HTML page for explanations: no external URLs, scripts or fonts; images inline."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jinja2
import numpy as np
from matplotlib.figure import Figure

from auditor.schemas import AttributionTree, Explanation

TEMPLATES = Path(__file__).resolve().parent / "templates"
MAX_TICK_LABELS = 64
"""Longer inputs get heat maps without per-token tick labels (they would overlap)."""


@dataclass(frozen=True)
class SvgNode:
    x: float
    y: float
    token: str
    label: str


@dataclass(frozen=True)
class SvgEdge:
    x1: float
    y1: float
    x2: float
    y2: float
    opacity: float
    title: str


@dataclass(frozen=True)
class TreeDrawing:
    """Geometry of the attribution tree: hidden-state levels as rows (top: output), tokens as columns."""

    width: float
    height: float
    rows: list[tuple[float, str]]
    columns: list[tuple[float, str]]
    nodes: list[SvgNode]
    edges: list[SvgEdge]


def tree_drawing(tree: AttributionTree, column_width: float = 78.0, row_height: float = 56.0) -> TreeDrawing:
    """Place node (layer l, token t) at column t and row num_layers − l; edge opacity grows with S̃ above τ."""
    left, top = 120.0, 30.0
    n = len(tree.tokens)

    def x(token_index: int) -> float:
        return left + column_width * (token_index + 0.5)

    def y(layer: int) -> float:
        return top + row_height * (tree.num_layers - layer)

    positions = {node.id: (x(node.token_index), y(node.layer)) for node in tree.nodes}
    span = max(1e-9, 1.0 - tree.threshold)
    edges = []
    for edge in tree.edges:
        (x1, y1), (x2, y2) = positions[edge.source], positions[edge.target]
        strength = min(1.0, max(0.0, (edge.score - tree.threshold) / span))
        title = f"layer {edge.layer}: S̃ = {edge.score:.3f}, attribution {edge.attribution:.3g}"
        edges.append(SvgEdge(x1, y1, x2, y2, 0.25 + 0.75 * strength, title))
    nodes = [
        SvgNode(*positions[node.id], token=node.token, label=f"{node.token} (token {node.token_index}, level {node.layer})")
        for node in tree.nodes
    ]
    levels = range(tree.num_layers, -1, -1)
    rows = [(y(level), "output" if level == tree.num_layers else f"layer {level} input") for level in levels]
    columns = [(x(i), token) for i, token in enumerate(tree.tokens)]
    width, height = left + column_width * n + 20, top + row_height * (tree.num_layers + 1) + 10
    return TreeDrawing(width, height, rows, columns, nodes, edges)


def png_data_uri(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=96)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def layer_heat_maps(layers: Sequence[int], summed: Sequence[np.ndarray], tokens: Sequence[str]) -> str:
    """One heat map per layer of the head-summed attribution Σ_h Attr_h (rows: query, columns: key), each on
    its own symmetric colour scale, in one PNG data URI."""
    n = len(tokens)
    columns = min(3, len(layers))
    rows = -(-len(layers) // columns)
    side = min(7.0, 1.6 + 0.2 * n)
    figure = Figure(figsize=(columns * (side + 1.6), rows * (side + 1.0)), layout="constrained")
    grid = figure.subplots(rows, columns, squeeze=False)
    for axes in grid.flat[len(layers) :]:
        axes.set_axis_off()
    for axes, layer, matrix in zip(grid.flat, layers, summed):
        limit = float(np.abs(matrix).max()) or 1.0
        image = axes.imshow(matrix, cmap="RdBu_r", vmin=-limit, vmax=limit)
        figure.colorbar(image, ax=axes, shrink=0.8)
        axes.set_title(f"layer {layer}", fontsize=11)
        axes.set_xlabel("key token", fontsize=9)
        axes.set_ylabel("query token", fontsize=9)
        if n <= MAX_TICK_LABELS:
            axes.set_xticks(range(n), list(tokens), rotation=90, fontsize=8, parse_math=False)
            axes.set_yticks(range(n), list(tokens), fontsize=8, parse_math=False)
        else:
            axes.tick_params(labelsize=8)
    return png_data_uri(figure)


def head_heat_maps(layers: Sequence[int], head_ids: Sequence[Sequence[int]], matrices: Sequence[np.ndarray]) -> str:
    """Small multiples Attr_h per head (columns) and layer (rows), each tile scaled to its own largest |value|,
    drawn as one tiled image (one PNG data URI)."""
    n = matrices[0].shape[-1]
    gap = max(2, n // 3)
    heads = max(len(ids) for ids in head_ids)
    tiles = np.full((len(layers) * (n + gap), heads * (n + gap)), np.nan)
    for row, per_head in enumerate(matrices):
        for column, matrix in enumerate(per_head):
            limit = float(np.abs(matrix).max()) or 1.0
            top, left = row * (n + gap) + gap, column * (n + gap)
            tiles[top : top + n, left : left + n] = matrix / limit
    width = min(16.0, 1.0 + 0.9 * heads)
    figure = Figure(figsize=(width, width * tiles.shape[0] / tiles.shape[1] + 0.3), layout="constrained")
    axes = figure.subplots()
    axes.imshow(tiles, cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    axes.set_axis_off()
    for row, (layer, ids) in enumerate(zip(layers, head_ids)):
        for column, head in enumerate(ids):
            x, y = column * (n + gap) + n / 2 - 0.5, row * (n + gap) + gap - 1
            axes.text(x, y, f"L{layer} h{head}", ha="center", va="bottom", fontsize=7)
    return png_data_uri(figure)


def render_html(explanations: Sequence[Explanation], title: str = "auditor: explanations") -> str:
    """The HTML page for ``explanations``; heat maps appear for those computed with matrices."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
    )
    pages = []
    for explanation in explanations:
        computed = [layer for layer in explanation.layers if layer.matrices is not None]
        maps = None
        if computed:
            per_head = [layer.matrices.to_numpy().astype(np.float64) for layer in computed]
            layers = [layer.layer for layer in computed]
            maps = {
                "summed": layer_heat_maps(layers, [matrices.sum(0) for matrices in per_head], explanation.tokens),
                "heads": head_heat_maps(layers, [layer.head_ids for layer in computed], per_head),
                "layers": layers,
            }
        drawing = tree_drawing(explanation.tree) if explanation.tree is not None else None
        pages.append({"explanation": explanation, "maps": maps, "tree": drawing})
    return environment.get_template("explanation.html.j2").render(title=title, pages=pages)
