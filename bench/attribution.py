"""Self-attention attribution: ours vs the paper's algorithm, side by side on the SST-2 fixture.

Naive: for every layer and each of m = 20 left-Riemann steps, a full forward + backward pass of the whole
model with that layer's attention patched (layers × m passes per example). Also shown: the paper's released
code, which batches the m steps of a layer into one pass. Ours: SelfAttentionAttribution with 3
Gauss–Legendre nodes, examples batched. Prints time per example, the speed ratios and the mean |completeness
delta| per layer of each.

    .venv/bin/python bench/attribution.py [--examples 16] [--steps 3] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from auditor.attribution import SelfAttentionAttribution  # noqa: E402
from auditor.data import load_dataset  # noqa: E402
from auditor.models import load_classifier  # noqa: E402
from auditor.quadrature import quadrature  # noqa: E402
from tests.reference import reference_attribution  # noqa: E402


def paper_algorithm(model, inputs, n_steps: int, batch_steps: bool) -> list[float]:
    """Completeness delta per layer of one example, attributed with the paper's algorithm."""
    nodes, weights = quadrature("riemann_left", n_steps)
    with torch.no_grad():
        target = int(model(**inputs).logits.argmax())
    deltas = []
    for layer in range(model.config.num_hidden_layers):
        attribution, full, zero = reference_attribution(model, inputs, layer, target, nodes, weights, batch_steps)
        deltas.append(float(attribution.sum()) - (full - zero))
    return deltas


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT.parent / "shared" / "models" / "minilm-sst2"))
    parser.add_argument("--examples", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3, help="Gauss–Legendre nodes for ours")
    parser.add_argument("--naive-steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    classifier = load_classifier(args.model, device="cpu")
    examples = load_dataset("sst2", split="dev").examples[: args.examples]
    texts = [e.text for e in examples]
    encodings = [dict(classifier.tokenizer(t, return_tensors="pt")) for t in texts]
    tokens = sum(int(e["input_ids"].shape[1]) for e in encodings)
    print(f"model {classifier.identity.name}, {len(texts)} SST-2 dev examples, {tokens / len(texts):.1f} tokens on average, "
          f"{torch.get_num_threads()} threads")

    engine = SelfAttentionAttribution(classifier.model)
    engine.attribute(**classifier.encode(texts[:2]), n_steps=args.steps)  # warm-up
    # The per-example algorithms run interleaved, example by example, so that load on the machine falls on
    # all of them alike; the batched run is repeated between them for the same reason.
    times = {"naive": 0.0, "paper": 0.0, "single": 0.0, "batched": 0.0}
    deltas: dict[str, list] = {"naive": [], "paper": [], "single": []}
    for index, (text, inputs) in enumerate(zip(texts, encodings)):
        seconds, delta = timed(paper_algorithm, classifier.model, inputs, args.naive_steps, False)
        times["naive"] += seconds
        deltas["naive"].append(delta)
        seconds, delta = timed(paper_algorithm, classifier.model, inputs, args.naive_steps, True)
        times["paper"] += seconds
        deltas["paper"].append(delta)
        seconds, (result,) = timed(engine.attribute, **classifier.encode([text]), n_steps=args.steps)
        times["single"] += seconds
        deltas["single"].append(result.delta.tolist())
        if index % 4 == 3 or index == len(texts) - 1:
            seconds, ours = timed(engine.attribute, **classifier.encode(texts), n_steps=args.steps)
            times["batched"] += seconds
    rounds = (len(texts) + 3) // 4
    ours_time = times["batched"] / rounds
    ours_delta = torch.stack([r.delta.abs() for r in ours]).mean(0)
    naive_time, naive_delta = times["naive"], torch.tensor(deltas["naive"]).abs().mean(0)
    paper_time, paper_delta = times["paper"], torch.tensor(deltas["paper"]).abs().mean(0)
    ours_single_time = times["single"]

    n = len(texts)
    rows = [
        (f"naive: {args.naive_steps}-step Riemann, one pass per layer and step", naive_time, naive_delta),
        (f"paper's code: {args.naive_steps} steps batched per layer", paper_time, paper_delta),
        (f"ours: {args.steps}-node Gauss–Legendre, one example at a time", ours_single_time, ours_delta),
        (f"ours: {args.steps}-node Gauss–Legendre, {n} examples batched", ours_time, ours_delta),
    ]
    print(f"\n{'algorithm':<62} {'ms/example':>10} {'speed-up':>9}   mean |delta| per layer 0…{len(ours_delta) - 1}")
    for name, seconds, delta in rows:
        print(f"{name:<62} {1000 * seconds / n:>10.1f} {naive_time / seconds:>8.1f}x   "
              + " ".join(f"{d:.5f}" for d in delta.tolist()))
    smaller = bool((ours_delta <= naive_delta).all())
    print(f"\nspeed ratio vs naive (batched): {naive_time / ours_time:.1f}x; vs naive (one at a time): "
          f"{naive_time / ours_single_time:.1f}x; vs the paper's batched code: {paper_time / ours_time:.1f}x")
    print(f"delta: ours {float(ours_delta.mean()):.5f} vs naive {float(naive_delta.mean()):.5f} (mean over layers); "
          f"ours <= naive on every layer: {smaller}")


if __name__ == "__main__":
    main()
