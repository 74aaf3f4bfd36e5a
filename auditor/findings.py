"""What an audit concludes from its successes, measured in the same run (issue 33): the forensics of every
success (``auditor.forensics``), the causal check of the main attack's implicated heads (``auditor.causal``)
and the defence advice (``auditor.defence``, ``auditor.causal.prune_advice``). Each step reads the attacks'
outcomes and changes none of them; the forensics are checkpointed like the attacks."""

from __future__ import annotations

from collections.abc import Callable

from auditor.causal import DEFAULT_K, causal_check, prune_advice
from auditor.checkpoint import Checkpoint
from auditor.data import Dataset
from auditor.defence import DefendedVictim
from auditor.errors import InputError, RequestRefused
from auditor.forensics import implicated_heads, success_forensics
from auditor.heads import ImportanceCache, compute_importance
from auditor.models import Classifier
from auditor.schemas import Advice, AttackOutcome, AttackSummary, CausalCheck, Forensics, ForensicsSummary, LabelLexicon
from auditor.victims import LocalVictim, OnnxVictim, Victim

Progress = Callable[[str, int, int], None]

IMPORTANCE_EXAMPLES = 200
"""Training examples of the attribution importance that orders the pruning row (``auditor heads``' default)."""


def attack_forensics(
    victim: Victim, outcomes: dict[str, list[AttackOutcome]], checkpoint: Checkpoint, lexicon: LabelLexicon, progress: Progress | None = None
) -> dict[str, list[AttackOutcome]]:
    """Every attack's outcomes, each success with its ``forensics`` (``auditor.forensics.success_forensics``),
    computed once: each goes to ``checkpoint`` (key ``forensics:NAME:INDEX``) before the next starts. A success
    whose explanation an endpoint refuses (``RequestRefused``: an answer over its size limit, a long RTE pair
    with every head's matrices) keeps ``forensics`` None, the refusal checkpointed, and the audit goes on."""
    if victim.tokenizer is None:
        raise InputError("forensics map the model's tokens to words and need its tokenizer: pass --tokenizer DIR, or --no-forensics")
    explained: dict[str, list[AttackOutcome]] = {}
    for name, items in outcomes.items():
        successes = [o for o in items if o.status == "succeeded"]
        for done, outcome in enumerate(successes, start=1):
            key = f"forensics:{name}:{outcome.index}"
            if key not in checkpoint:
                try:
                    checkpoint.put(key, success_forensics(outcome, victim.explain, victim.tokenizer, lexicon.words).model_dump(mode="json"))
                except RequestRefused as refusal:
                    checkpoint.put(key, {"refused": str(refusal)})
            if progress:
                progress(f"{name} forensics", done, len(successes))
        explained[name] = [o.model_copy(update={"forensics": stored_forensics(checkpoint[f"forensics:{name}:{o.index}"])}) if o.status == "succeeded" else o for o in items]
    return explained


def stored_forensics(record: dict) -> Forensics | None:
    """A success's checkpointed forensics; None for an explanation the endpoint refused."""
    return None if "refused" in record else Forensics.model_validate(record)


def victim_weights(victim: Victim) -> Classifier | None:
    """The PyTorch model behind ``victim``: a local model's, an ONNX graph's (the weights beside it), a
    defended victim's inner one's; None for an endpoint, or an ONNX graph without its weights."""
    if isinstance(victim, DefendedVictim):
        return victim_weights(victim.victim)
    if isinstance(victim, LocalVictim):
        return victim.classifier
    if isinstance(victim, OnnxVictim):
        return victim.weights()  # the model its explanations already loaded, if they did
    return None


def audit_causal_check(
    victim: Victim, attack: AttackSummary, forensics: ForensicsSummary, training: Dataset | None, seed: int
) -> tuple[CausalCheck | None, Advice | None, str | None]:
    """(the causal check, its ``prune-implicated`` advice, None), or (None, None, why it did not run). The
    implicated heads are ``forensics``' ranking; the pruning row's order is the attribution importance of the
    heads on the first ``IMPORTANCE_EXAMPLES`` examples of ``training`` (cached as ``auditor heads`` caches it),
    never on the audited examples."""
    classifier = victim_weights(victim)
    heads = implicated_heads(forensics)
    if classifier is None:
        return None, None, "not run: the victim has no PyTorch weights to mask (an endpoint, or an ONNX graph without them)"
    if training is None:
        return None, None, "not run: no training data to order the attribution-pruned heads (pass --lexicon-data)"
    if len(heads) < DEFAULT_K:
        return None, None, f"not run: the forensics of {attack.name} implicate {len(heads)} heads, fewer than the {DEFAULT_K} masked"
    importance = compute_importance(classifier, training, "attribution", IMPORTANCE_EXAMPLES, steps=3, seed=seed, cache=ImportanceCache())
    check = causal_check(classifier, attack.outcomes, heads, importance, attack.name, seed=seed)
    return check, prune_advice(check), None
