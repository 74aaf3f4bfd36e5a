"""The attribution tree (Hao et al., "Self-Attention Attribution", AAAI 2021, Algorithm 1)."""

from __future__ import annotations

from collections.abc import Sequence

import networkx as nx
import numpy as np
import numpy.typing as npt

from auditor.errors import InputError
from auditor.schemas import AttributionTree, TreeEdge, TreeNode


def node_id(layer: int, token_index: int) -> str:
    """The id of the tree node of token ``token_index`` at hidden-state level ``layer``."""
    return f"{layer}:{token_index}"


def normalise(matrix: npt.NDArray[np.floating]) -> npt.NDArray[np.floating] | None:
    """S̃ = S / max(S[1:, :]): scaled by the largest attribution of a non-[CLS] query row.

    The [CLS] row is left out of the normaliser (it typically dominates). In a BERT classifier's last layer
    only the [CLS] row reaches the output, so every other row is exactly 0: when the non-[CLS] maximum is not
    positive, the maximum over the whole matrix is used instead. Returns None when that is not positive
    either: then no interaction of the layer has positive attribution to keep.
    """
    for rows in (matrix[1:, :], matrix):
        largest = float(rows.max()) if rows.size else 0.0
        if np.isfinite(largest) and largest > 0:
            return matrix / largest
    return None


def attribution_tree(
    matrices: Sequence[npt.ArrayLike],
    tokens: Sequence[str],
    threshold: float = 0.4,
    layers: Sequence[int] | None = None,
    num_layers: int | None = None,
) -> AttributionTree:
    """Build the attribution tree from head-summed attribution matrices S^l (rows: query i, columns: key j).

    ``matrices[k]`` belongs to encoder layer ``layers[k]`` (default: 0, 1, …); ``num_layers`` (default: the
    highest layer + 1) is the hidden-state level of the root. Per layer, S̃^l = S^l / max(S^l[1:, :]) (see
    ``normalise``) and the edges with S̃^l[i, j] > τ are kept. Top-down from [CLS] (token 0) at level
    ``num_layers``, for l from the top layer down: every token i already in the tree gains, for every kept edge (i ← j) with j ≠ i and j
    not yet in the tree, the child j at level l with an edge j → i. Children found in layer l join the tree
    after layer l, so they take children from lower layers only; a token reachable from several parents in the
    same layer is attached once, to the parent with the largest S̃ (ties: the lower token index).
    """
    if not 0 < threshold <= 1:
        raise InputError(f"the tree threshold must be in (0, 1], got {threshold}")
    arrays = [np.asarray(matrix, dtype=np.float64) for matrix in matrices]
    layer_ids = list(range(len(arrays))) if layers is None else [int(layer) for layer in layers]
    if len(layer_ids) != len(arrays) or len(set(layer_ids)) != len(layer_ids):
        raise InputError(f"need one distinct layer index per matrix, got {layer_ids} for {len(arrays)} matrices")
    n = len(tokens)
    if n == 0:
        raise InputError("the attribution tree needs at least one token")
    for layer, array in zip(layer_ids, arrays):
        if array.shape != (n, n):
            raise InputError(f"layer {layer}: expected a {n}×{n} matrix for {n} tokens, got shape {array.shape}")
    top = num_layers if num_layers is not None else (max(layer_ids) + 1 if layer_ids else 0)
    if layer_ids and (min(layer_ids) < 0 or max(layer_ids) >= top):
        raise InputError(f"layers must lie in 0…{top - 1}, got {layer_ids}")

    level = {0: top}
    nodes = [TreeNode(id=node_id(top, 0), layer=top, token_index=0, token=tokens[0])]
    edges: list[TreeEdge] = []
    for layer, raw in sorted(zip(layer_ids, arrays), key=lambda item: -item[0]):
        scaled = normalise(raw)
        if scaled is None:
            continue
        parents = sorted(level)
        children: dict[int, int] = {}
        for child in range(n):
            if child in level:
                continue
            candidates = [parent for parent in parents if scaled[parent, child] > threshold]
            if candidates:
                children[child] = max(candidates, key=lambda parent: (scaled[parent, child], -parent))
        for child, parent in sorted(children.items()):
            level[child] = layer
            nodes.append(TreeNode(id=node_id(layer, child), layer=layer, token_index=child, token=tokens[child]))
            edges.append(
                TreeEdge(
                    source=node_id(layer, child),
                    target=node_id(level[parent], parent),
                    layer=layer,
                    score=float(scaled[parent, child]),
                    attribution=float(raw[parent, child]),
                )
            )
    return AttributionTree(tokens=list(tokens), threshold=threshold, num_layers=top, nodes=nodes, edges=edges)


def to_networkx(tree: AttributionTree) -> nx.DiGraph:
    """The tree as a directed graph, edges pointing from key token to query token (towards [CLS])."""
    graph = nx.DiGraph()
    for node in tree.nodes:
        graph.add_node(node.id, layer=node.layer, token_index=node.token_index, token=node.token)
    for edge in tree.edges:
        graph.add_edge(edge.source, edge.target, layer=edge.layer, score=edge.score, attribution=edge.attribution)
    return graph
