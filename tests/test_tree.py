"""The attribution tree (Algorithm 1) on hand-made matrices whose tree is worked out by hand."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from auditor.errors import InputError
from auditor.schemas import AttributionTree
from auditor.tree import attribution_tree, normalise, to_networkx

TOKENS = ["[CLS]", "a", "b", "c", "d"]


def hand_made() -> list[np.ndarray]:
    """Three layers over five tokens; the comments give S̃ = S / max(S[1:, :]) of each entry that matters."""
    top = np.zeros((5, 5))  # layer 2, normaliser S[1, 2] = 1
    top[0, 0] = 5.0  # self edge of [CLS]: ignored
    top[0, 1] = 2.0  # S̃ = 2: a joins under [CLS]
    top[0, 3] = 0.4  # S̃ = 0.4 = τ: not kept (strictly greater)
    top[1, 2] = 1.0  # S̃ = 1, but a joins only after layer 2: b is not attached here
    middle = np.zeros((5, 5))  # layer 1, normaliser S[1, 2] = 0.5 ([CLS] row excluded)
    middle[0, 4] = 10.0  # S̃ = 20: d joins under [CLS]
    middle[0, 2] = 0.3  # S̃ = 0.6: b is reachable from [CLS] ...
    middle[1, 2] = 0.5  # ... and from a with S̃ = 1: attached once, to a
    middle[1, 3] = 0.2  # S̃ = 0.4 = τ: not kept
    bottom = np.zeros((5, 5))  # layer 0, normaliser 1
    bottom[2, 3] = 1.0  # c reachable from b (S̃ = 1) ...
    bottom[4, 3] = 0.9  # ... and from d (S̃ = 0.9): attached to b
    bottom[2, 1] = 0.95  # a is already in the tree: no second node
    bottom[3, 0] = 0.8  # c is not in the tree before layer 0: no edge from it
    return [bottom, middle, top]


def edge_list(tree: AttributionTree) -> list[tuple[str, str, int, float, float]]:
    return [(e.source, e.target, e.layer, round(e.score, 9), round(e.attribution, 9)) for e in tree.edges]


def test_hand_made_tree() -> None:
    tree = attribution_tree(hand_made(), TOKENS, threshold=0.4)
    assert tree.num_layers == 3 and tree.threshold == 0.4 and tree.tokens == TOKENS
    assert [(n.id, n.layer, n.token_index, n.token) for n in tree.nodes] == [
        ("3:0", 3, 0, "[CLS]"),
        ("2:1", 2, 1, "a"),
        ("1:2", 1, 2, "b"),
        ("1:4", 1, 4, "d"),
        ("0:3", 0, 3, "c"),
    ]
    assert edge_list(tree) == [
        ("2:1", "3:0", 2, 2.0, 2.0),
        ("1:2", "2:1", 1, 1.0, 0.5),
        ("1:4", "3:0", 1, 20.0, 10.0),
        ("0:3", "1:2", 0, 1.0, 1.0),
    ]


def test_threshold_is_strict() -> None:
    """Lowering τ just below 0.4 admits the two entries whose S̃ is exactly 0.4."""
    tree = attribution_tree(hand_made(), TOKENS, threshold=0.39)
    assert ("1:3", "3:0", 2, 0.4, 0.4) not in edge_list(tree)
    assert ("2:3", "3:0", 2, 0.4, 0.4) in edge_list(tree)
    assert {n.token_index for n in tree.nodes} == {0, 1, 2, 3, 4}


def test_cls_row_is_not_in_the_normaliser() -> None:
    matrix = np.array([[0.0, 8.0, 0.0], [0.0, 0.0, 2.0], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(normalise(matrix), matrix / 2.0)


def test_last_layer_normalises_by_the_cls_row() -> None:
    """In a classifier's last layer only the [CLS] row is non-zero: then S̃ = S / max(S)."""
    last = np.zeros((3, 3))
    last[0] = [0.1, 0.5, 0.15]
    np.testing.assert_allclose(normalise(last), last / 0.5)
    tree = attribution_tree([np.zeros((3, 3)), last], ["[CLS]", "x", "y"])
    assert edge_list(tree) == [("1:1", "2:0", 1, 1.0, 0.5)]  # y: S̃ = 0.3 ≤ τ
    assert normalise(np.zeros((3, 3))) is None
    assert normalise(-np.ones((3, 3))) is None


def test_layer_subset_keeps_layer_numbers() -> None:
    bottom, middle, _ = hand_made()
    tree = attribution_tree([middle, bottom], TOKENS, layers=[4, 1], num_layers=6)
    assert tree.nodes[0].id == "6:0"
    # layer 4 (middle): [CLS] takes b (S̃ 0.6) and d (S̃ 20); layer 1 (bottom): b takes a (0.95) and c (1 > 0.9 via d)
    assert [(e.source, e.target, e.layer) for e in tree.edges] == [
        ("4:2", "6:0", 4),
        ("4:4", "6:0", 4),
        ("1:1", "4:2", 1),
        ("1:3", "4:2", 1),
    ]


def test_random_matrices_give_a_greedy_tree() -> None:
    """On random matrices: a tree rooted at [CLS]; every edge kept by τ; no kept edge left unused."""
    rng = np.random.default_rng(0)
    n, layers, threshold = 9, 6, 0.3
    matrices = [rng.normal(size=(n, n)) for _ in range(layers)]
    tree = attribution_tree(matrices, [f"t{i}" for i in range(n)], threshold=threshold)
    graph = to_networkx(tree)
    assert nx.is_arborescence(graph.reverse())
    level = {node.token_index: node.layer for node in tree.nodes}
    assert len(level) == len(tree.nodes)
    by_id = {node.id: node for node in tree.nodes}
    for edge in tree.edges:
        child, parent = by_id[edge.source].token_index, by_id[edge.target].token_index
        scaled = matrices[edge.layer] / matrices[edge.layer][1:].max()
        assert edge.score == pytest.approx(scaled[parent, child]) and edge.score > threshold
        assert edge.attribution == pytest.approx(matrices[edge.layer][parent, child])
        assert level[child] == edge.layer < level[parent]
    for layer, matrix in enumerate(matrices):
        scaled = matrix / matrix[1:].max()
        for parent, parent_level in level.items():
            for child in range(n):
                if parent_level > layer and child != parent and scaled[parent, child] > threshold:
                    assert level.get(child, -1) >= layer, (layer, parent, child)


def test_json_round_trip() -> None:
    tree = attribution_tree(hand_made(), TOKENS)
    assert AttributionTree.model_validate_json(tree.model_dump_json()) == tree


def test_bad_input_is_an_input_error() -> None:
    with pytest.raises(InputError, match="5×5"):
        attribution_tree([np.zeros((4, 4))], TOKENS)
    with pytest.raises(InputError, match="threshold"):
        attribution_tree(hand_made(), TOKENS, threshold=0.0)
    with pytest.raises(InputError, match="layers"):
        attribution_tree(hand_made(), TOKENS, layers=[0, 1, 5], num_layers=3)
