"""Options ``audit`` and ``compare`` share: the attack's settings (each option not given takes the default
tuned on training data), the data, patterns and lexicon, and their parsers."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from auditor.quadrature import MAX_STEPS

if TYPE_CHECKING:
    from auditor.schemas import AuditSettings

Data = Annotated[str, typer.Option("--data", help="Task name (dev split; 'sst2:train' for another), or a data file: TSV, CSV, JSONL, Parquet, or a datasets save_to_disk folder.")]
Patterns = Annotated[Path | None, typer.Option("--patterns", help="Patterns from 'auditor mine' (default: mine the local model).")]
Examples = Annotated[int, typer.Option("--examples", min=1, help="Examples to attack: the first N rows (or a random sample of N with --sample); no more rows are read than needed.")]
Budget = Annotated[int, typer.Option("--budget", min=1, help="Model queries per attacked example.")]
MaxWords = Annotated[int, typer.Option("--max-words", min=1, help="Most words any attack may insert, change or delete.")]
Transformations = Annotated[
    str | None,
    typer.Option(
        "--transformations",
        help="Edits the attribution-guided attack tries on each ranked word, comma list of tokenedit, charedit, typo, delete, pattern "
        "(default: the combination tuned on training data).",
    ),
]
SufficientGain = Annotated[
    str | None,
    typer.Option(
        "--sufficient-gain",
        help="Keep a word's candidate without querying the rest once it closes this share of the margin per edit left, "
        "in (0, 1], or 'none' to query all (default: tuned on training data).",
    ),
]
EditsPerWord = Annotated[
    int | None,
    typer.Option("--edits-per-word", min=1, help="Character edits 'tokenedit' tries on each word (default: tuned on training data)."),
]
RankingSteps = Annotated[
    int | None,
    typer.Option("--steps", min=1, max=MAX_STEPS, help="Quadrature nodes of the ranking's attribution (default: tuned on training data)."),
]
RankingLayers = Annotated[
    str | None,
    typer.Option(
        "--ranking-layers",
        help="Encoder layers of the ranking's attribution, comma list (-1 is the last) or 'all' (default: tuned on training data).",
    ),
]
SweepWords = Annotated[
    str | None,
    typer.Option("--sweep-words", help="Words probed for the last edit allowed, a number or 'all' (default: tuned on training data)."),
]
Baselines = Annotated[
    str,
    typer.Option(
        "--baselines",
        help="Comma list of random, deepwordbug, leave-one-out (our edits with DeepWordBug's ranking), pattern-only, edits-only "
        "(our search with the mined patterns alone, or without them); 'none' for none.",
    ),
]
LabelWords = Annotated[
    Path | None,
    typer.Option("--label-words", help="Extra label-carrying words (one a line, optionally 'label<TAB>word') no attack may add or delete."),
]
LexiconData = Annotated[
    str | None,
    typer.Option("--lexicon-data", help="Training data for the label-word lexicon (default: the task's train split)."),
]
TopK = Annotated[
    int | None, typer.Option("--top-k", min=1, help="Mined patterns per class that pattern insertion tries (default: tuned on training data).")
]
TriggerTopK = Annotated[int, typer.Option("--trigger-top-k", min=0, help="Patterns per class in the universal-trigger table.")]
TRIGGER_EXAMPLES = 1000
"""The trigger table's default examples: every example of the fixtures' dev splits (SST-2 872, RTE 277), and on a
train split a bound. Measured on SST-2 train (5 patterns mined from 200 of its sentences): the first 1000 rows
took 72 s with 95 % intervals of the drop ±1.5–2.0 points, the first 4000 took 174 s at ±0.6–0.9 points with the
same signs for every drop over 2 points; the whole split (67,349 rows) would take about 48 minutes (README,
"Auditing robustness")."""
TriggerExamples = Annotated[
    int, typer.Option("--trigger-examples", min=1, help=f"Examples for the trigger table: the first N of --data (default {TRIGGER_EXAMPLES}).")
]
MineExamples = Annotated[
    int | None, typer.Option("--mine-examples", min=1, help="Training sentences to mine when no --patterns (default: all, as 'auditor mine').")
]

ExplainSuccesses = Annotated[
    bool,
    typer.Option(
        "--forensics/--no-forensics",
        help="Explain every success of every attack: the heads and word pairs whose attribution the flip changed most "
        "(two explanations per success; an endpoint needs --tokenizer).",
    ),
]

Invariance = Annotated[
    str,
    typer.Option(
        "--invariance",
        help="Invariance checks, comma list of typos, lowercase, uppercase, punctuation-removed, punctuation-added, "
        "contractions-expanded, contractions-contracted, names, locations; 'all' or 'none'.",
    ),
]


def share_of_words(value: float | None) -> float | None:
    if value is not None and not 0 < value <= 1:
        raise typer.BadParameter(f"a share of the words in (0, 1], got {value:g}")
    return value


TypoRate = Annotated[
    float | None,
    typer.Option("--typo-rate", callback=share_of_words, help="Share of eligible words the typos check misspells (default 0.1, chosen on training data)."),
]
MaxFlipRate = Annotated[
    str | None,
    typer.Option(
        "--max-flip-rate",
        help="Exit 1 when an invariance check's flip rate exceeds this fraction: RATE for every check, or a comma list "
        "of CHECK=RATE (e.g. 0.05,typos=0.1).",
    ),
]


def parse_invariance(value: str) -> list[str]:
    from auditor.schemas import CHECK_NAMES

    chosen = [part.strip() for part in value.split(",") if part.strip()]
    if chosen == ["all"]:
        return list(CHECK_NAMES)
    if chosen == ["none"]:
        return []
    unknown = [name for name in chosen if name not in CHECK_NAMES]
    if unknown or not chosen:
        raise typer.BadParameter(f"a comma list of {', '.join(CHECK_NAMES)}, or all, or none; got {value!r}", param_hint="'--invariance'")
    return [name for name in CHECK_NAMES if name in chosen]


def parse_max_flip_rate(value: str | None, checks: list[str]) -> dict[str, float]:
    """``RATE`` (every check) and/or ``CHECK=RATE`` entries -> the largest flip rate each check may have."""
    if value is None:
        return {}
    if not checks:
        raise typer.BadParameter("no invariance check runs (--invariance none) to gate", param_hint="'--max-flip-rate'")
    limits: dict[str, float] = {}
    for entry in [part.strip() for part in value.split(",")]:
        name, _, rate = entry.rpartition("=")
        try:
            limit = float(rate)
        except ValueError:
            limit = math.nan
        if not 0 <= limit <= 1:
            raise typer.BadParameter(f"a rate in [0, 1] or CHECK=RATE, comma-separated; got {entry!r}", param_hint="'--max-flip-rate'")
        if name and name not in checks:
            raise typer.BadParameter(
                f"{name!r} is not among the checks run ({', '.join(checks) or 'none'}; see --invariance)", param_hint="'--max-flip-rate'"
            )
        limits |= {name: limit} if name else {check: limit for check in checks if check not in limits}
    return limits


def parse_transformations(value: str | None) -> list[str]:
    from auditor.attack import TRANSFORMATIONS
    from auditor.schemas import AuditSettings

    if value is None:
        return list(AuditSettings.model_fields["transformations"].default)
    chosen = [part.strip() for part in value.split(",") if part.strip()]
    unknown = [name for name in chosen if name not in TRANSFORMATIONS]
    if unknown or not chosen:
        raise typer.BadParameter(f"a comma list of {', '.join(TRANSFORMATIONS)}, got {value!r}", param_hint="'--transformations'")
    return chosen


def parse_sufficient_gain(value: str | None) -> float | None:
    from auditor.schemas import AuditSettings

    if value is None:
        return AuditSettings.model_fields["sufficient_gain"].default
    if value.strip().lower() == "none":
        return None
    try:
        gain = float(value)
    except ValueError:
        gain = math.nan
    if not 0 < gain <= 1:
        raise typer.BadParameter(f"a number in (0, 1] or 'none', got {value!r}", param_hint="'--sufficient-gain'")
    return gain


def parse_ranking_layers(value: str | None) -> list[int] | None:
    from auditor.schemas import AuditSettings

    if value is None:
        return AuditSettings.model_fields["layers"].default
    if value.strip().lower() == "all":
        return None
    try:
        return [int(part) for part in value.split(",")]
    except ValueError:
        raise typer.BadParameter(f"a comma list of layer indices (-1 is the last) or 'all', got {value!r}", param_hint="'--ranking-layers'") from None


def parse_sweep_words(value: str | None) -> int | None:
    from auditor.schemas import AuditSettings

    if value is None:
        return AuditSettings.model_fields["sweep_words"].default
    if value.strip().lower() == "all":
        return None
    if not value.strip().isdigit() or int(value) < 1:
        raise typer.BadParameter(f"a positive number or 'all', got {value!r}", param_hint="'--sweep-words'")
    return int(value)


def attack_settings(
    examples: int,
    budget: int,
    max_words: int,
    transformations: str | None,
    edits_per_word: int | None,
    sufficient_gain: str | None,
    steps: int | None,
    ranking_layers: str | None,
    sweep_words: str | None,
    top_k: int | None,
    positions: str,
    baselines: str,
    trigger_top_k: int,
    trigger_examples: int | None,
    seed: int,
) -> AuditSettings:
    """The ``AuditSettings`` of the options ``audit`` and ``compare`` share, each parsed (a usage error when
    malformed); an option not given takes the default tuned on training data."""
    from auditor.schemas import AuditSettings

    return AuditSettings(
        examples=examples,
        budget=budget,
        max_words=max_words,
        transformations=parse_transformations(transformations),
        candidates=AuditSettings.model_fields["candidates"].default if edits_per_word is None else edits_per_word,
        sufficient_gain=parse_sufficient_gain(sufficient_gain),
        steps=AuditSettings.model_fields["steps"].default if steps is None else steps,
        layers=parse_ranking_layers(ranking_layers),
        sweep_words=parse_sweep_words(sweep_words),
        top_k=AuditSettings.model_fields["top_k"].default if top_k is None else top_k,
        positions=positions,
        baselines=parse_baselines(baselines),
        trigger_top_k=trigger_top_k,
        trigger_examples=trigger_examples,
        seed=seed,
    )


def check_tokenizer(locations: list[str], tokenizer: str | None, transformations: list[str], forensics: bool = False) -> None:
    """``--tokenizer`` goes with an endpoint, and an endpoint needs it for 'tokenedit' and for ``forensics``
    (it serves no tokenizer)."""
    from auditor.victims import is_endpoint

    endpoints = [location for location in locations if is_endpoint(location)]
    if tokenizer is not None and not endpoints:
        raise typer.BadParameter("--tokenizer is for an endpoint: a local model uses its own tokenizer", param_hint="'--tokenizer'")
    if endpoints and tokenizer is None and "tokenedit" in transformations:
        raise typer.BadParameter(
            "the 'tokenedit' transformation needs the endpoint model's tokenizer (an endpoint serves none): "
            "pass --tokenizer DIR, or other --transformations",
            param_hint="'--tokenizer'",
        )
    if endpoints and tokenizer is None and forensics:
        raise typer.BadParameter(
            "the forensics map the endpoint model's tokens to words and need its tokenizer (an endpoint serves none): "
            "pass --tokenizer DIR, or --no-forensics",
            param_hint="'--tokenizer'",
        )


def parse_baselines(value: str) -> list[str]:
    chosen = [] if value.strip() == "none" else [b.strip() for b in value.split(",") if b.strip()]
    known = ("random", "deepwordbug", "leave-one-out", "pattern-only", "edits-only")
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        raise typer.BadParameter(f"unknown baseline {unknown[0]!r}: choose from {', '.join(known)}, or none", param_hint="'--baselines'")
    return chosen
