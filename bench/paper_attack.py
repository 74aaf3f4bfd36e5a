"""The paper's adversarial-pattern experiment (Hao et al., AAAI 2021) on the fixtures, with its controls and the
validity column (``auditor.paper_patterns``).

Per task: the first ``--train-examples`` training examples of each class (SST-2: 150, its whole sentences,
``Dataset.sentences``, as ``auditor mine`` does, the paper dropping SST-2 examples under 15 tokens; RTE: 250) are mined
(attribution trees, ``auditor mine``'s quadrature and τ); each class's top ``--top-k`` patterns by the
frequency of the pair among its trees' edges (inside the premise for a text pair) and the three controls of
each are inserted into the dev examples of every other class that the model gets right. Prints, per task, the
model's dev accuracy per class and a table (accuracy after with its 95 % Wilson interval, the label-word flag,
the insertions the reader rule admits); as its LAST line one JSON list, a ``PaperAttackRow`` per pattern and
per control.

    .venv/bin/python bench/paper_attack.py                      # SST-2 and RTE fixtures
    .venv/bin/python bench/paper_attack.py --model DIR --data dev.csv --train-data train.csv \\
        --text-column premise --text-pair-column hypothesis --label-column label [--task NAME]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from auditor.data import DataMapping, Dataset, load_dataset, parse_label_map  # noqa: E402
from auditor.errors import AuditorError  # noqa: E402
from auditor.models import Classifier, load_classifier  # noqa: E402
from auditor.paper_patterns import FrequencyMatcher, Predict, paper_attack  # noqa: E402
from auditor.schemas import MinedExample, PaperAttackRow, TriggerMiningOptions  # noqa: E402
from auditor.triggers import PatternMiner, aggregate_patterns  # noqa: E402
from auditor.validity import build_lexicon  # noqa: E402
from auditor.victims import LocalVictim  # noqa: E402

MODELS = ROOT.parent / "shared" / "models"
# RTE's premises average 43 words and a premise's tree joins about 3 pairs inside it, so two trees rarely share one:
# at 150 per class its classes had 2 and 1 premise patterns, at 250 they have 5 or more (README).
RTE_PER_CLASS = 250
FIXTURES = [
    ("SST-2", MODELS / "minilm-sst2", "sst2:dev", "sst2:train", 150),
    ("RTE", MODELS / "minilm-rte", "rte:dev", "rte:train", RTE_PER_CLASS),
]
MIN_SUPPORT = 2  # a pattern is a pair at least two trees of its class join


def per_class_head(train: Dataset, labels: list[str], count: int) -> list:
    """The first ``count`` examples of each gold label, in file order."""
    taken = {label: 0 for label in range(len(labels))}
    chosen = []
    for example in train.examples:
        if example.label is not None and taken.get(example.label, count) < count:
            taken[example.label] += 1
            chosen.append(example)
    return chosen


def mine(classifier: Classifier, examples: list, options: TriggerMiningOptions) -> list[MinedExample]:
    miner = PatternMiner(classifier, options)
    mined: list[MinedExample] = []
    for start in range(0, len(examples), options.batch_size):
        mined += miner(examples[start : start + options.batch_size])
        print(f"  mined {len(mined)}/{len(examples)}", file=sys.stderr, flush=True)
    return mined


def run_task(
    task: str, model: Path | str, dev_spec: str, train_spec: str, mapping: DataMapping | None, per_class: int, args: argparse.Namespace
) -> tuple[list[PaperAttackRow], list[str]]:
    started = time.perf_counter()
    classifier = load_classifier(model, device="cpu")
    labels = classifier.labels
    train = load_dataset(train_spec, "train", mapping=mapping, labels=labels)
    dev = load_dataset(dev_spec, "dev", mapping=mapping, labels=labels)
    if train.unlabelled or dev.unlabelled:
        raise AuditorError("the paper's protocol needs gold labels in both --data and --train-data")
    options = TriggerMiningOptions(units="sentences", batch_size=16, min_support=MIN_SUPPORT, ranking="frequency")
    mined_from = per_class_head(train.sentences(), labels, per_class)
    print(f"{task}: mining {len(mined_from)} training examples", file=sys.stderr, flush=True)
    mined = mine(classifier, mined_from, options)
    patterns, _ = aggregate_patterns(mined, labels, MIN_SUPPORT, ranking="frequency")
    lexicon = build_lexicon(train, labels)
    matcher = FrequencyMatcher([t for e in train.examples for t in (e.text, e.text_pair) if t is not None])
    victim = LocalVictim(classifier)
    predicted: dict = {}  # the dev examples are predicted for the header and again by paper_attack: once is enough

    def predict(texts) -> list[int]:
        inputs = [t.tokenizer_input for t in texts]
        new = list(dict.fromkeys(i for i in inputs if i not in predicted))
        predicted.update(zip(new, victim(new).argmax(1).tolist()))
        return [predicted[i] for i in inputs]

    rows = paper_attack(task, labels, patterns, mined, dev.examples, predict, matcher, set(lexicon.words), args.top_k, args.seed)
    header = [f"{task}: {len(mined)} training examples mined ({len(mined_from)} asked), {len(dev.examples)} dev examples, {time.perf_counter() - started:.0f} s"]
    header += [f"  dev accuracy on {labels[c]}: {accuracy(dev, c, predict)}" for c in range(len(labels))]
    return rows, header


def accuracy(dev: Dataset, label: int, predict: Predict) -> str:
    from auditor.attack import attacked_text

    members = [e for e in dev.examples if e.label == label]
    right = sum(p == label for p in predict([attacked_text(e) for e in members])) if members else 0
    return f"{right}/{len(members)} = {right / max(1, len(members)):.1%}"


def table(rows: list[PaperAttackRow]) -> list[str]:
    if not rows:
        return [f"  no pattern: no pair inside the first text is joined by {MIN_SUPPORT} or more trees of a class (mine more: --train-examples)"]
    lines = [f"  {'direction':<34} {'kind':<12} {'pattern':<28} {'n':>4} {'before':>6} {'after [95% CI]':>22} {'label word':>10} {'reader ok':>9}"]
    for row in rows:
        after = "-" if row.accuracy_after is None else f"{row.accuracy_after:.1%} [{row.after_low:.1%}, {row.after_high:.1%}]"
        before = "-" if row.accuracy_before is None else f"{row.accuracy_before:.0%}"
        lines.append(
            f"  {row.direction:<34} {row.kind:<12} {row.pattern:<28} {row.examples:>4} {before:>6} {after:>22} {str(row.label_word).lower():>10} {row.reader_valid:>9}"
        )
    return lines


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a sequence classifier folder or hub name (default: the SST-2 and RTE fixtures)")
    parser.add_argument("--data", help="the dev data: a GLUE task (rte:dev), a data file or folder (with --model)")
    parser.add_argument("--train-data", help="the training data the patterns are mined from (with --model)")
    parser.add_argument("--task", help="the task's name in the table (default: the --data name)")
    parser.add_argument("--text-column")
    parser.add_argument("--text-pair-column")
    parser.add_argument("--label-column")
    parser.add_argument("--label-map")
    parser.add_argument(
        "--train-examples", type=int, help=f"training examples mined per class (default: SST-2 150, RTE {RTE_PER_CLASS}, else 150)"
    )
    parser.add_argument("--top-k", type=int, default=3, help="patterns per direction (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random-pair control")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (default 1: on the shared 2-core machine two threads took 2-6x the wall time of one)"
    )
    args = parser.parse_args(argv)
    given = [name for name in ("model", "data", "train_data") if getattr(args, name)]
    if given and len(given) < 3:
        parser.error("--model, --data and --train-data go together")
    if not args.model and any((args.text_column, args.text_pair_column, args.label_column, args.label_map, args.task)):
        parser.error("the data options need --model, --data and --train-data")
    if (args.train_examples is not None and args.train_examples < 1) or args.top_k < 1 or args.threads < 1:
        parser.error("--train-examples, --top-k and --threads must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    try:
        if args.model:
            mapping = DataMapping(args.text_column, args.text_pair_column, args.label_column, parse_label_map(args.label_map))
            runs = [(args.task or Path(args.data.split(":")[0]).stem, args.model, args.data, args.train_data, mapping, args.train_examples or 150)]
        else:
            runs = [(task, model, dev, train, None, args.train_examples or per_class) for task, model, dev, train, per_class in FIXTURES]
        rows: list[PaperAttackRow] = []
        for task, model, dev, train, mapping, per_class in runs:
            task_rows, header = run_task(task, model, dev, train, mapping, per_class, args)
            print("\n".join(header + table(task_rows)), flush=True)
            rows += task_rows
    except AuditorError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps([row.model_dump(mode="json") for row in rows], ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
