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
        edges.append(
            SvgEdge(x1, y1, x2, y2, 0.25 + 0.75 * strength, f"layer {edge.layer}: S̃ = {edge.score:.3f}, attribution {edge.attribution:.3g}")
        )
    nodes = [
        SvgNode(*positions[node.id], token=node.token, label=f"{node.token} (token {node.token_index}, level {node.layer})")
        for node in tree.nodes
    ]
    rows = [(y(level), "output" if level == tree.num_layers else f"layer {level} input") for level in range(tree.num_layers, -1, -1)]
    columns = [(x(i), token) for i, token in enumerate(tree.tokens)]
    return TreeDrawing(left + column_width * n + 20, top + row_height * (tree.num_layers + 1) + 10, rows, columns, nodes, edges)


def png_data_uri(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def heat_map(matrix: np.ndarray, tokens: Sequence[str], title: str) -> str:
    """Head-summed attribution of one layer as a PNG data URI; rows: query token, columns: key token."""
    n = len(tokens)
    size = min(9.0, 2.5 + 0.22 * n)
    figure = Figure(figsize=(size + 1.2, size))
    axes = figure.subplots()
    limit = float(np.abs(matrix).max()) or 1.0
    image = axes.imshow(matrix, cmap="RdBu_r", vmin=-limit, vmax=limit)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    axes.set_title(title, fontsize=10)
    axes.set_xlabel("key token")
    axes.set_ylabel("query token")
    if n <= MAX_TICK_LABELS:
        axes.set_xticks(range(n), list(tokens), rotation=90, fontsize=8, parse_math=False)
        axes.set_yticks(range(n), list(tokens), fontsize=8, parse_math=False)
    return png_data_uri(figure)


def head_maps(matrices: np.ndarray, head_ids: Sequence[int]) -> str:
    """One small heat map per head (each on its own colour scale), as a PNG data URI."""
    heads = matrices.shape[0]
    columns = min(6, heads)
    rows = -(-heads // columns)
    figure = Figure(figsize=(1.7 * columns, 1.8 * rows))
    grid = figure.subplots(rows, columns, squeeze=False)
    for index, axes in enumerate(grid.flat):
        axes.set_axis_off()
        if index < heads:
            limit = float(np.abs(matrices[index]).max()) or 1.0
            axes.imshow(matrices[index], cmap="RdBu_r", vmin=-limit, vmax=limit)
            axes.set_title(f"head {head_ids[index]}", fontsize=8)
    return png_data_uri(figure)


def render_html(explanations: Sequence[Explanation], title: str = "auditor: explanations") -> str:
    """The HTML page for ``explanations``; heat maps appear for those computed with matrices."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
    )
    pages = []
    for explanation in explanations:
        maps = []
        for layer in explanation.layers:
            if layer.matrices is None:
                continue
            per_head = np.asarray(layer.matrices, dtype=np.float64)
            maps.append(
                {
                    "layer": layer.layer,
                    "summed": heat_map(per_head.sum(0), explanation.tokens, f"layer {layer.layer}: Σ_h Attr_h"),
                    "heads": head_maps(per_head, layer.head_ids),
                }
            )
        drawing = tree_drawing(explanation.tree) if explanation.tree is not None else None
        pages.append({"explanation": explanation, "maps": maps, "tree": drawing})
    return environment.get_template("explanation.html.j2").render(title=title, pages=pages)
