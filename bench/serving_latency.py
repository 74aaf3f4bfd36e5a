"""Serving latency and throughput: full vs 50 %-pruned model, PyTorch eager vs ONNX Runtime, batch 1 and 32.

The pruned model removes the 50 % least important heads by attribution importance (first 200 SST-2 train
examples, cached), one head at least kept per layer. All variants are timed side by side in one run on the
same SST-2 dev sentences with the same thread count; the table prints the median latency per batch,
throughput, and the ratio of each variant's latency to full PyTorch's (lower is faster). The int8 columns
use ONNX Runtime dynamic quantisation, shown with its dev accuracy because it changes the predictions.
Usage: python bench/serving_latency.py [--repeats 20] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from auditor.data import load_dataset
from auditor.export import OnnxClassifier, export_onnx, quantize_dynamic
from auditor.heads import ImportanceCache, compute_importance, model_inputs, scores_tensor
from auditor.models import Classifier, load_classifier
from auditor.pruning import heads_for_fraction, prune_model, rank_heads

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def torch_runner(classifier: Classifier, texts: list[str]) -> Callable[[], np.ndarray]:
    encoding = model_inputs(classifier.encode(texts, truncate=True))

    def run() -> np.ndarray:
        with torch.inference_mode():
            return classifier.model(**encoding).logits.numpy()

    return run


def onnx_runner(runner: OnnxClassifier, texts: list[str]) -> Callable[[], np.ndarray]:
    encoding = runner.encode(texts)
    return lambda: runner.logits(encoding)


def dev_accuracy(predict: Callable[[list[str]], np.ndarray], texts: list[str], labels: list[int]) -> float:
    predicted = np.concatenate([predict(texts[i : i + 64]).argmax(-1) for i in range(0, len(texts), 64)])
    return float((predicted == np.array(labels)).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads for PyTorch and ONNX Runtime, load average at start {os.getloadavg()}")
    full = load_classifier(SHARED / "models" / "minilm-sst2", device="cpu")
    importance = compute_importance(full, load_dataset("sst2", split="train"), "attribution", 200, cache=ImportanceCache())
    scores = scores_tensor(importance)
    heads = rank_heads(scores, heads_for_fraction(0.5, 72))
    dev = load_dataset("sst2")
    texts, labels = [e.text for e in dev.examples], [int(e.label) for e in dev.examples]  # type: ignore[arg-type]
    batches = {1: texts[:1], 32: texts[:32]}
    with tempfile.TemporaryDirectory() as scratch:
        folder = prune_model(full, heads, Path(scratch) / "pruned")
        pruned = load_classifier(folder, device="cpu")
        variants: dict[str, tuple[Callable[[list[str]], Callable[[], np.ndarray]], Callable[[list[str]], np.ndarray]]] = {}
        for name, classifier in (("full", full), ("pruned50", pruned)):
            onnx_path = export_onnx(classifier, Path(scratch) / f"{name}.onnx")
            int8_path = quantize_dynamic(onnx_path, Path(scratch) / f"{name}.int8.onnx")
            ort_fp32 = OnnxClassifier(onnx_path, folder, providers=["CPUExecutionProvider"], threads=args.threads)
            ort_int8 = OnnxClassifier(int8_path, folder, providers=["CPUExecutionProvider"], threads=args.threads)
            variants[f"{name} torch"] = (lambda t, c=classifier: torch_runner(c, t), lambda t, c=classifier: torch_runner(c, t)())
            variants[f"{name} ort"] = (lambda t, r=ort_fp32: onnx_runner(r, t), lambda t, r=ort_fp32: onnx_runner(r, t)())
            variants[f"{name} ort-int8"] = (lambda t, r=ort_int8: onnx_runner(r, t), lambda t, r=ort_int8: onnx_runner(r, t)())
        results = {}
        for size, batch in batches.items():
            runners = {name: make(batch) for name, (make, _) in variants.items()}
            # interleave the variants repeat by repeat so that load changes hit all of them alike
            timings: dict[str, list[float]] = {name: [] for name in runners}
            for run in runners.values():
                run()
            for _ in range(args.repeats):
                for name, run in runners.items():
                    started = time.perf_counter()
                    run()
                    timings[name].append(time.perf_counter() - started)
            results[size] = {name: statistics.median(values) for name, values in timings.items()}
        accuracies = {name: dev_accuracy(predict, texts, labels) for name, (_, predict) in variants.items()}
    print(f"pruned50: {sum(map(len, heads.values()))} of 72 heads removed (attribution order); SST-2 dev, {len(texts)} sentences; "
          f"median of {args.repeats} interleaved runs")
    print(f"{'variant':<20}{'dev acc':>9}{'b1 ms':>9}{'b1 x full':>11}{'b1 seq/s':>10}{'b32 ms':>9}{'b32 x full':>12}{'b32 seq/s':>11}")
    for name in variants:
        one, many = results[1][name], results[32][name]
        print(
            f"{name:<20}{accuracies[name]:>9.4f}{one * 1e3:>9.2f}{one / results[1]['full torch']:>11.2f}{1 / one:>10.1f}"
            f"{many * 1e3:>9.2f}{many / results[32]['full torch']:>12.2f}{32 / many:>11.1f}"
        )
    print(f"load average at end {os.getloadavg()} (2-core machine shared with other jobs: absolute times are noisy, ratios less so)")


if __name__ == "__main__":
    main()
