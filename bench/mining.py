"""Pattern mining throughput and yield, measured side by side in one run.

1. Throughput: the same SST-2 training sentences mined (``auditor mine``'s defaults, checkpoint included)
   by this one process (PyTorch's own threads: every core) and by 2 local Ray workers (one thread each),
   in interleaved rounds whose order alternates (ABBA), each round on its own slice of sentences. The Ray
   actors are started and loaded once, before the first round (a long mining run amortises that; its
   seconds are printed apart). Prints examples/s per round and the median ratio.
2. Yield: from the checkpoints of the default ``auditor mine`` runs (out/patterns/TASK.json.mining.jsonl,
   written by the README's commands), the distinct word pairs held by at least 5 examples' trees per 1,000
   examples mined, before and after the label-word filter, at growing prefixes of the mined examples.

    .venv/bin/python bench/mining.py [--rounds 4] [--examples 128]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
sys.path.insert(0, str(ROOT))

from auditor.data import load_dataset  # noqa: E402
from auditor.distributed import RayMiningExecutor, RayPool  # noqa: E402
from auditor.models import load_classifier  # noqa: E402
from auditor.schemas import MinedExample, TriggerMiningOptions  # noqa: E402
from auditor.triggers import aggregate_patterns, mine_triggers  # noqa: E402
from auditor.validity import NEGATIONS, build_lexicon  # noqa: E402

MODELS = {"sst2": "minilm-sst2", "rte": "minilm-rte"}


def mined_records(checkpoint: Path) -> list[MinedExample]:
    """The mined examples of a finished mining checkpoint, in batch order."""
    records = {}
    for line in checkpoint.read_bytes().splitlines()[1:]:
        record = json.loads(line)
        records[int(record["key"].split(":")[1])] = record["value"]
    return [MinedExample.model_validate(m) for index in sorted(records) for m in records[index]]


def yield_table(task: str) -> list[str]:
    checkpoint = ROOT / "out" / "patterns" / f"{task}.json.mining.jsonl"
    if not checkpoint.is_file():
        return [f"{task}: no {checkpoint.relative_to(ROOT)}; run the README's 'auditor mine' for {task} first"]
    train = load_dataset(task, split="train")
    classifier = load_classifier(ROOT.parent / "shared" / "models" / MODELS[task])
    exclude = set(build_lexicon(train, classifier.labels).words) | NEGATIONS
    mined = mined_records(checkpoint)
    lines = []
    for count in sorted({n for n in (500, 1000, 2000, 4000) if n < len(mined)} | {len(mined)}):
        every, _ = aggregate_patterns(mined[:count], classifier.labels, 5)
        label_free, pairs = aggregate_patterns(mined[:count], classifier.labels, 5, exclude)
        lines.append(
            f"{task}: first {count} examples mined: {pairs} distinct pairs; support >= 5: {len(every)} pairs = "
            f"{1000 * len(every) / count:.1f} per 1,000 examples, {len(label_free)} label-free = {1000 * len(label_free) / count:.1f} per 1,000"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--examples", type=int, default=128, help="sentences per round and mode (a multiple of workers × batch keeps the workers equally busy)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    model = ROOT.parent / "shared" / "models" / MODELS["sst2"]
    classifier = load_classifier(model)
    classifier.model.eval()
    sentences = load_dataset("sst2", split="train").sentences()
    options = TriggerMiningOptions()
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; {args.examples} SST-2 train sentences per round and mode, batch {options.batch_size}")
    rates: dict[str, list[float]] = {"one process": [], f"{args.workers} Ray workers": []}
    with tempfile.TemporaryDirectory() as scratch, RayPool("local", workers=args.workers) as pool:
        executor = RayMiningExecutor(pool, str(model))
        started = time.perf_counter()
        warm = sentences.head(args.workers * options.batch_size)
        mine_triggers(classifier, warm, options.model_copy(update={"units": "all"}), executor=executor)
        print(f"Ray: {args.workers} actors started and loaded the model in {time.perf_counter() - started:.1f} s (excluded below)")
        for round_ in range(args.rounds):
            start = (1 + round_) * args.examples * 2
            chunk = sentences.head(start + args.examples)
            chunk.examples = chunk.examples[start:]
            modes = list(rates) if round_ % 2 == 0 else list(reversed(rates))
            for mode in modes:
                checkpoint = Path(scratch) / f"{round_}-{mode}.jsonl"
                began = time.perf_counter()
                mine_triggers(classifier, chunk, options.model_copy(update={"units": "all"}), checkpoint, None if mode == "one process" else executor)
                rates[mode].append(len(chunk.examples) / (time.perf_counter() - began))
            print(f"round {round_ + 1}: " + ", ".join(f"{mode} {rates[mode][-1]:.2f} examples/s" for mode in rates))
    single, spread = (statistics.median(r) for r in rates.values())
    print(f"median: one process {single:.2f} examples/s, {args.workers} Ray workers {spread:.2f} examples/s = {spread / single:.2f}x")
    for task in MODELS:
        print("\n".join(yield_table(task)))


if __name__ == "__main__":
    main()
