"""Robustness reports as files: JSON (``RobustnessReport``, with its JSON Schema beside it), a short Markdown
summary for CI logs, and a self-contained HTML page (inline PNG plots, no external resources). Every file
is written atomically: to a temporary file in the same folder, then renamed over the target.
"""

from __future__ import annotations

import base64
import difflib
import io
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from matplotlib.figure import Figure

from auditor.errors import InputError
from auditor.schemas import (
    AttackOutcome,
    AttackSummary,
    ComparisonReport,
    MIN_APPLIED,
    InvarianceCheck,
    InvarianceOutcome,
    Rate,
    RobustnessReport,
    TriggerRow,
    WordEdit,
)

TEMPLATES = Path(__file__).resolve().parent / "templates"
REPORT_FILES = ("report.json", "report.schema.json", "report.md", "report.html")


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part; a
    path that cannot be written (a folder, a file where a folder should be, no permission) is an
    ``InputError`` naming it."""
    try:
        _replace_atomically(path, data)
    except OSError as error:
        blocking = next((parent for parent in path.parents if parent.exists() and not parent.is_dir()), None)
        reason = (
            f"{blocking} is a file, not a folder" if blocking else "it is a folder" if path.is_dir() else error.strerror or str(error)
        )
        raise InputError(f"cannot write {path}: {reason}") from None


def write_files(out_dir: Path, contents: dict[str, str]) -> list[Path]:
    """Write each ``{name: content}`` into ``out_dir`` atomically (``write_atomic``), in order; the paths written."""
    for name, content in contents.items():
        write_atomic(out_dir / name, content)
    return [out_dir / name for name in contents]


def _replace_atomically(path: Path, data: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        with os.fdopen(handle, "wb") as file:
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def number(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def interval(rate: Rate | None, note: str | None = None) -> str:
    """``97.3 % [96.1 %, 98.2 %]``: the rate and its interval; ``–`` for no rate (with ``note``, why: ``– (note)``)."""
    if rate is None or rate.rate is None:
        return f"– ({note})" if note else "–"
    return f"{percent(rate.rate)} [{percent(rate.low)}, {percent(rate.high)}]"


def markdown_escaped(text: str) -> str:
    """User text for Markdown: backticks and pipes escaped, so SST-2's tokenized quotes (two backticks) stay text
    instead of opening code spans, and a pair pattern ``in | in`` stays in its table cell."""
    return text.replace("`", "\\`").replace("|", "\\|")


def markdown_text(value: str) -> str:
    """``repr(value)``, escaped for Markdown (``markdown_escaped``)."""
    return markdown_escaped(repr(value))


def render_markdown(report: RobustnessReport, max_examples: int = 3) -> str:
    """A short summary: one row per attack (valid successes and every cost), the per-class rows of every
    attack, one row per invariance check, the trigger table and a few successful attribution-guided attacks."""
    attacks = [report.attack, *report.baselines]
    lexicon = report.lexicon
    source = f"measured on {lexicon.data.count} examples of {lexicon.data.title}" if lexicon.data else "from the user's list"
    lines = [
        f"# Robustness audit: {report.victim.title()}",
        "",
        f"{report.data.count} examples of {report.data.title} ({report.data.source}); query budget {report.settings.budget}, "
        f"at most {report.settings.max_words} words edited by any attack; clean accuracy {interval(report.clean_accuracy_interval)}.",
        *report.data.notes(),
        "Every rate is followed by its 95 % Wilson interval in brackets.",
        f"Validity: every candidate of every attack passed these checks ({lexicon.words} label-carrying words, {source}):",
        *(f"- {check}" for check in report.validity),
    ]
    if report.resumed:
        lines.append(f"Resumed: {report.resumed} attack outcomes came from the checkpoint of an earlier run.")
    lines += [
        "",
        "| attack | accuracy under attack | valid success rate | successes by edit | queries / attack | queries / success | explanations | rejected | words edited / success | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for a in attacks:
        lines.append(
            f"| {a.name} | {interval(a.accuracy_under_attack_interval)} | {interval(a.success_rate_interval)} | {edit_mix(a)} | {number(a.mean_queries)} | "
            f"{number(a.mean_queries_per_success)} | {a.explanations} | {a.rejected} | {number(a.mean_word_edits, 2)} | {a.seconds:.1f} |"
        )
    lines += ["", class_table(attacks), *invariance_table(report), *forensics_table(report), *causal_table(report), *advice_lines(report)]
    if report.triggers:
        lines += [
            "",
            "| trigger | label | support | inserted into | accuracy before | after | drop [95 % CI] |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {markdown_escaped(t.pattern)} | {t.pattern_label} | {t.support} | {t.target_class} ({t.examples}) | {interval(t.accuracy_before_interval)} | "
            f"{interval(t.accuracy_after_interval)} | {drop_interval(t)} |"
            for t in report.triggers
        ]
        lines += ["", trigger_verdict(report.triggers)]
    successes = [o for o in report.attack.outcomes if o.status == "succeeded"][:max_examples]
    if successes:
        lines += ["", "Successful attribution-guided attacks:"]
        labels = report.victim.labels
        for o in successes:
            lines.append(
                f"- {markdown_text(joined_text(o.text, o.text_pair))} → {markdown_text(joined_text(o.perturbed_text, o.perturbed_text_pair))} "
                f"({labels[o.label]} → {labels[o.perturbed_prediction]}; {'; '.join(map(edit_text, o.edits))})"
            )
            if o.forensics is not None:
                lines.append(f"  - {markdown_escaped(o.forensics.sentence)}")
    return "\n".join(lines) + "\n"


def flip_summary(check: InvarianceCheck) -> str:
    """One check in a sentence: ``typos: 7 of 180 predictions flipped (3.9 % [1.9, 7.8] at 95 %)``."""
    if check.flip_rate is None:
        return f"{check.name}: {check.flips} of {check.applied} predictions flipped ({check.note})"
    return f"{check.name}: {check.flips} of {check.applied} predictions flipped ({interval(check.flip_rate)} at {100 * check.flip_rate.level:g} %)"


def flip_text(outcome: InvarianceOutcome, labels: list[str]) -> str:
    """One flip: ``'original' → 'perturbed' (positive → negative)``."""
    original = joined_text(outcome.text, outcome.text_pair)
    perturbed = joined_text(outcome.perturbed_text, outcome.perturbed_text_pair)
    return f"{original!r} → {perturbed!r} ({labels[outcome.original_prediction]} → {labels[outcome.perturbed_prediction]})"


def invariance_table(report: RobustnessReport) -> list[str]:
    """Markdown: one row per invariance check (flip rate with its Wilson interval, up to three flips)."""
    if not report.invariance:
        return []
    lines = [
        "",
        f"Invariance: the model's prediction on each perturbed example against its prediction on the original "
        f"(typo rate {report.settings.typo_rate:g}; no rate under {MIN_APPLIED} examples).",
        "",
        "| check | applied | flips | flip rate [95 % CI] | flipped, e.g. |",
        "|---|---|---|---|---|",
    ]
    labels = report.victim.labels
    for c in report.invariance:
        examples = "; ".join(flip_text(o, labels) for o in c.flip_examples).replace("|", "\\|") or "none"
        lines.append(f"| {c.name} | {c.applied} | {c.flips} | {interval(c.flip_rate, c.note)} | {examples} |")
    return lines


def head_name(layer: int, head: int) -> str:
    """A head as the reports name it, counted from 0: ``L3 H7``."""
    return f"L{layer} H{head}"


def head_names(heads: Sequence[tuple[int, int]]) -> str:
    """``L4 H7, L2 H1``: (layer, head) pairs as ``head_name`` names them."""
    return ", ".join(head_name(layer, head) for layer, head in heads)


def forensics_table(report: RobustnessReport, shown: int = 3) -> list[str]:
    """Markdown: per attack, the ``shown`` heads most often implicated and kinds of pair most often broken in
    its successes (``RobustnessReport.forensics_summary``), with counts and Wilson intervals."""
    if not report.forensics_summary:
        return []
    first = report.forensics_summary[0]
    lines = [
        "",
        f"Forensics (layers and heads counted from 0): per attack, the heads most often among the {first.implicated_per_success} whose "
        f"attribution mass a success changed most, the kinds of word pair most often among its {first.broken_per_success} largest "
        "falls, and the successes whose largest fall holds an edited word; over its successes.",
        "",
        "| attack | successes | heads implicated | pairs broken | largest fall holds an edited word |",
        "|---|---|---|---|---|",
    ]
    for s in report.forensics_summary:
        heads = ", ".join(f"{head_name(h.layer, h.head)} {h.count} ({interval(h.rate)})" for h in s.heads[:shown]) or "–"
        kinds = ", ".join(f"{k.kind} {k.count} ({interval(k.rate)})" for k in s.pair_kinds[:shown]) or "–"
        refused = f" ({s.refused} more refused by the endpoint)" if s.refused else ""
        lines.append(f"| {s.attack} | {s.successes}{refused} | {heads} | {kinds} | {interval(s.edited)} |")
    return lines


def causal_table(report: RobustnessReport) -> list[str]:
    """Markdown: the causal check's rows at the advice's k (``RobustnessReport.causal_check``; every size is in the
    HTML report), or why it did not run."""
    check = report.causal_check
    if check is None:
        return ["", f"Causal check: {report.causal_check_note}."] if report.causal_check_note else []
    lines = [
        "",
        f"Causal check ({check.attack}: {check.reproduced} successes re-run with heads masked; a flip is undone when the masked model "
        f"predicts the original class again; clean: {check.examples} examples, unmasked accuracy {interval(check.clean_accuracy)}):",
        "",
        "| heads masked | k | heads | flips undone | clean examples broken | clean accuracy |",
        "|---|---|---|---|---|---|",
    ]
    for row in [r for r in check.rows if r.k == check.k]:
        lines.append(
            f"| {row.selection} | {row.k} | {head_names(row.heads)} | {interval(row.undone)} | {interval(row.clean_broken)} | {interval(row.clean_accuracy)} |"
        )
    return lines


def advice_lines(report: RobustnessReport) -> list[str]:
    """Markdown: each piece of defence advice in its line (the adaptive audit's rates are in the line; its
    table is in the HTML report)."""
    if not report.advice:
        return []
    return ["", "Defence advice:", *(f"- **{a.defence}** ({'helps' if a.helps else 'does not help'}): {a.line}" for a in report.advice)]


def edit_mix(attack: AttackSummary) -> str:
    """The valid successes by the kinds of edit they hold: ``misspelling 40, insertion 3``."""
    return ", ".join(f"{kind} {count}" for kind, count in attack.successes_by_edit.items()) or "none"


def drop_interval(row: TriggerRow) -> str:
    """A trigger's accuracy drop with its 95 % interval, marked ``*`` when the interval excludes 0."""
    mark = " *" if row.significant else ""
    return f"{100 * row.drop:+.1f} [{100 * row.drop_low:+.1f}, {100 * row.drop_high:+.1f}] points{mark}"


def trigger_verdict(rows: list[TriggerRow]) -> str:
    """One line: which triggers change the accuracy significantly (their 95 % bootstrap interval excludes 0)."""
    significant = [r for r in rows if r.significant]
    if not significant:
        return f"No trigger changes the accuracy significantly: all {len(rows)} 95 % bootstrap intervals of the drop include 0."
    return (
        f"{len(significant)} of {len(rows)} triggers (*) change the accuracy significantly (95 % bootstrap interval of the drop "
        f"excludes 0): " + ", ".join(f"{r.pattern!r} → {r.target_class}" for r in significant) + "."
    )


def edit_text(edit: WordEdit) -> str:
    """One word edit as a reader check reads: ``great → graet (misspelling, spell checker restores it)``."""
    if edit.kind == "insertion":
        return f"inserted {edit.edited!r}"
    if edit.kind == "deletion":
        return f"deleted {edit.original!r}"
    restored = "spell checker restores it" if edit.restored else "spell checker does not restore it"
    word = ", a dictionary word" if edit.is_word else ""
    return f"{edit.original} → {edit.edited} ({edit.kind}{word}, {restored})"


def class_table(attacks: list[AttackSummary]) -> str:
    """Markdown: per class, clean accuracy and accuracy under each attack."""
    lines = [
        "| class | examples | clean | " + " | ".join(f"under {a.name}" for a in attacks) + " |",
        "|---|---|---|" + "---|" * len(attacks),
    ]
    for row, c in enumerate(attacks[0].per_class):
        under = " | ".join(interval(a.per_class[row].accuracy_under_attack_interval) for a in attacks)
        lines.append(f"| {c.name} | {c.examples} | {interval(c.clean_accuracy_interval)} | {under} |")
    return "\n".join(lines)


def joined_text(text: str, pair: str | None) -> str:
    return text if pair is None else f"{text} || {pair}"


def highlighted(original: str, perturbed: str) -> list[tuple[str, bool]]:
    """Whitespace tokens of ``perturbed``, each marked True when an alignment with ``original`` shows it
    inserted or changed."""
    before, after = original.split(), perturbed.split()
    marks = [False] * len(after)
    for tag, _, _, j1, j2 in difflib.SequenceMatcher(a=before, b=after, autojunk=False).get_opcodes():
        if tag in ("insert", "replace"):
            marks[j1:j2] = [True] * (j2 - j1)
    return list(zip(after, marks))


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def budget_plot(curves: dict[str, AttackSummary]) -> str:
    """Accuracy under attack vs query budget, one line per named attack."""
    figure = Figure(figsize=(6, 3.4))
    axes = figure.add_subplot()
    for name, attack in curves.items():
        axes.plot([p.budget for p in attack.budget_curve], [100 * p.accuracy for p in attack.budget_curve], marker="o", label=name)
    axes.set_xscale("log")
    axes.set_xlabel("queries per example (log scale)")
    axes.set_ylabel("accuracy under attack (%)")
    axes.set_ylim(0, 100)
    axes.grid(alpha=0.3)
    axes.legend()
    return _png(figure)


def class_plot(report: RobustnessReport) -> str:
    attacks = [report.attack, *report.baselines]
    classes = report.attack.per_class
    figure = Figure(figsize=(6, 3.4))
    axes = figure.add_subplot()
    width = 0.8 / (len(attacks) + 1)
    positions = list(range(len(classes)))
    axes.bar([x - 0.4 + width / 2 for x in positions], [100 * c.clean_accuracy for c in classes], width, label="clean")
    for i, attack in enumerate(attacks, start=1):
        values = [100 * c.accuracy_under_attack for c in attack.per_class]
        axes.bar([x - 0.4 + width / 2 + i * width for x in positions], values, width, label=attack.name)
    axes.set_xticks(positions, [f"{c.name} ({c.examples})" for c in classes])
    axes.set_ylabel("accuracy (%)")
    axes.set_ylim(0, 100)
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1, 1))
    return _png(figure)


def trigger_plot(rows: list[TriggerRow]) -> str | None:
    if not rows:
        return None
    figure = Figure(figsize=(6, 0.45 * len(rows) + 1))
    axes = figure.add_subplot()
    names = [f"{r.pattern[:30]} → {r.target_class}" for r in rows]
    positions = list(range(len(rows)))
    axes.barh([y + 0.2 for y in positions], [100 * r.accuracy_before for r in rows], 0.4, label="before")
    axes.barh([y - 0.2 for y in positions], [100 * r.accuracy_after for r in rows], 0.4, label="after")
    axes.set_yticks(positions, names)
    axes.invert_yaxis()
    axes.set_xlabel("accuracy on the class (%)")
    axes.set_xlim(0, 100)
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1, 1))
    return _png(figure)


def render_html(report: RobustnessReport, max_examples: int = 10) -> str:
    environment = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]))
    attacks = [report.attack, *report.baselines]
    examples: list[tuple[AttackSummary, AttackOutcome, list[list[tuple[str, bool]]]]] = []
    for attack in attacks:
        for outcome in [o for o in attack.outcomes if o.status == "succeeded"][:max_examples]:
            segments = [highlighted(outcome.text, outcome.perturbed_text)]
            if outcome.text_pair is not None and outcome.perturbed_text_pair is not None:
                segments.append(highlighted(outcome.text_pair, outcome.perturbed_text_pair))
            examples.append((attack, outcome, segments))
    return environment.get_template("robustness.html.j2").render(
        report=report,
        attacks=attacks,
        examples=examples,
        labels=report.victim.labels,
        budget_plot=budget_plot({a.name: a for a in attacks}),
        class_plot=class_plot(report),
        trigger_plot=trigger_plot(report.triggers),
        percent=percent,
        interval=interval,
        number=number,
        edit_mix=edit_mix,
        drop_interval=drop_interval,
        trigger_verdict=trigger_verdict,
        flip_text=flip_text,
        head_name=head_name,
        head_names=head_names,
    )


def report_schema() -> str:
    return json.dumps(RobustnessReport.model_json_schema(), indent=2, sort_keys=True) + "\n"


def render_comparison_markdown(report: ComparisonReport) -> str:
    full, pruned = report.full, report.pruned
    rows = [
        ("model", full.victim.location, pruned.victim.location),
        ("accuracy", percent(full.accuracy), percent(pruned.accuracy)),
        ("ms / example", number(full.ms_per_example, 2), number(pruned.ms_per_example, 2)),
    ]
    for a, b in zip([full.attack, *full.baselines], [pruned.attack, *pruned.baselines]):
        rows += [
            (f"accuracy under {a.name}", interval(a.accuracy_under_attack_interval), interval(b.accuracy_under_attack_interval)),
            (f"{a.name} valid success rate", interval(a.success_rate_interval), interval(b.success_rate_interval)),
            (f"{a.name} queries / success", number(a.mean_queries_per_success), number(b.mean_queries_per_success)),
        ]
    lines = [
        f"# Full vs pruned: {report.data.count} examples of {report.data.title}",
        "",
        f"Prediction agreement: {percent(report.agreement)}; query budget {report.settings.budget}, at most "
        f"{report.settings.max_words} words edited; label-carrying edits, edited numbers and changed words that are not misspellings a reader undoes rejected for every attack.",
        "",
        "| | full | pruned |",
        "|---|---|---|",
        *[f"| {name} | {a} | {b} |" for name, a, b in rows],
    ]
    for side in (full, pruned):
        lines += ["", f"{side.victim.location}, per class:", "", class_table([side.attack, *side.baselines])]
    if full.triggers:
        lines += [
            "",
            "| trigger | support | inserted into | before (full) | after (full) | drop (full) | before (pruned) | after (pruned) | drop (pruned) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for a, b in zip(full.triggers, pruned.triggers):
            lines.append(
                f"| {a.pattern} | {a.support} | {a.target_class} ({a.examples}) | {percent(a.accuracy_before)} | {percent(a.accuracy_after)} | "
                f"{drop_interval(a)} | {percent(b.accuracy_before)} | {percent(b.accuracy_after)} | {drop_interval(b)} |"
            )
    return "\n".join(lines) + "\n"


def render_comparison_html(report: ComparisonReport) -> str:
    environment = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]))
    return environment.get_template("comparison.html.j2").render(
        report=report,
        pruned_heads=[
            None if side.victim.model is None else sum(len(h) for h in side.victim.model.pruned_heads.values())
            for side in (report.full, report.pruned)
        ],
        trigger_pairs=list(zip(report.full.triggers, report.pruned.triggers)),
        baseline_pairs=list(zip(report.full.baselines, report.pruned.baselines)),
        budget_plot=budget_plot({"full": report.full.attack, "pruned": report.pruned.attack}),
        percent=percent,
        interval=interval,
        number=number,
        drop_interval=drop_interval,
    )


def write_comparison(report: ComparisonReport, out_dir: Path) -> list[Path]:
    """Write comparison.json, comparison.md and comparison.html into ``out_dir``."""
    contents = {
        "comparison.json": report.model_dump_json(indent=2),
        "comparison.md": render_comparison_markdown(report),
        "comparison.html": render_comparison_html(report),
    }
    return write_files(out_dir, contents)


def write_report(report: RobustnessReport, out_dir: Path) -> list[Path]:
    """Write report.json, report.schema.json, report.md and report.html into ``out_dir``."""
    contents = {
        "report.json": report.model_dump_json(indent=2),
        "report.schema.json": report_schema(),
        "report.md": render_markdown(report),
        "report.html": render_html(report),
    }
    return write_files(out_dir, {name: contents[name] for name in REPORT_FILES})
