"""Accuracy after pruning 30 / 50 / 70 % of the attention heads, per importance method, on SST-2 and RTE.

Importance: the first N (default 200) examples of each task's train split, target = gold label. Accuracy:
the full dev set, heads removed by head masks in one global ranking, at least one head kept per layer.
Importances are cached (~/.cache/auditor/heads, keyed by weights, examples, method and options), so a rerun
only re-evaluates. Usage: python bench/pruning.py [--examples N] [--tasks sst2,rte] [--out out/bench-pruning]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from auditor.data import load_dataset
from auditor.heads import ImportanceCache, accuracy, compute_importance, encode_dataset, scores_tensor
from auditor.models import load_classifier
from auditor.pruning import plot_curves, pruning_curve
from auditor.schemas import IMPORTANCE_METHODS

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MODELS = {"sst2": SHARED / "models" / "minilm-sst2", "rte": SHARED / "models" / "minilm-rte"}
FRACTIONS = (0.3, 0.5, 0.7)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--tasks", default="sst2,rte")
    parser.add_argument("--out", type=Path, default=Path("out/bench-pruning"))
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, load average at start {os.getloadavg()}")
    cache = ImportanceCache()
    for task in args.tasks.split(","):
        started = time.perf_counter()
        classifier = load_classifier(MODELS[task])
        importance_data = load_dataset(task, split="train")
        dev = load_dataset(task)
        batches = encode_dataset(classifier, dev)
        full = accuracy(classifier.model, batches)
        curves = {}
        seconds = {}
        for method in IMPORTANCE_METHODS:
            importance = compute_importance(classifier, importance_data, method, args.examples, cache=cache)
            seconds[method] = importance.seconds
            curves[method] = pruning_curve(classifier.model, batches, scores_tensor(importance), FRACTIONS)
        print(f"\n{task.upper()} ({classifier.identity.name}): importance on the first {args.examples} train examples, "
              f"accuracy on all {len(dev)} dev examples; unpruned accuracy {full:.4f}")
        print(f"{'method':<12}" + "".join(f"{f'{f:.0%} pruned':>13}" for f in FRACTIONS) + f"{'importance s':>14}")
        for method, points in curves.items():
            print(f"{method:<12}" + "".join(f"{p.accuracy:>13.4f}" for p in points) + f"{seconds[method]:>14.1f}")
        print(f"(heads removed: {', '.join(str(p.heads_removed) for p in curves['random'])} of 72; "
              f"{time.perf_counter() - started:.0f} s for this task; importance seconds are from the run that filled the cache)")
        plot_curves(curves, args.out / f"{task}.png", title=f"{task} dev")
    print(f"\nload average at end {os.getloadavg()} (2-core machine shared with other jobs)")


if __name__ == "__main__":
    main()
