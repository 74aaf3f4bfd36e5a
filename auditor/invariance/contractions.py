"""Contractions expanded and contracted (``don't`` ↔ ``do not``, ``it's`` ↔ ``it is``), in the text's own
writing: joined (``don't``) or set off as tokenised corpora write them (``do n't``, ``it 's``). Only
unambiguous forms change: ``'s`` only after a pronoun (never a possessive), expanded to ``has`` before
``been``/``got``/``gotten`` and to ``is`` otherwise; ``'d`` (had or would) is never expanded, nor a negation before its subject (``won't you``); a verb is
contracted only when a word follows it (``that's what it is.`` keeps its last ``is``)."""

from __future__ import annotations

import random
import re

from auditor.invariance.perturbations import TextPerturbation, is_tokenised

NEGATED = frozenset("do does did is are was were have has had would should could must need might".split())
"""Verbs whose negation is the verb + ``n't``."""
IRREGULAR_NEGATED = {"will": "wo", "shall": "sha"}
"""Verbs whose negation changes the verb: ``will not`` ↔ ``won't``; ``cannot`` ↔ ``can't`` is apart."""
CLITICS = {
    "am": ("m", frozenset({"i"})),
    "are": ("re", frozenset({"you", "we", "they"})),
    "is": ("s", frozenset({"he", "she", "it", "that", "there", "what", "who", "here", "where"})),
    "will": ("ll", frozenset({"i", "you", "we", "they", "he", "she", "it", "that", "there", "who"})),
    "have": ("ve", frozenset({"i", "you", "we", "they", "who"})),
    "would": ("d", frozenset({"i", "you", "we", "they", "he", "she"})),
}
"""Verb -> (its clitic, the pronouns it contracts with)."""
HAS_BEFORE = frozenset({"been", "got", "gotten"})

APOSTROPHE = "['’]"
SUBJECTS = "i|you|he|she|it|we|they"
NEGATION = re.compile(rf"\b([A-Za-z]+?)(\s?)n{APOSTROPHE}t\b(?!\s+(?:{SUBJECTS})\b)", re.IGNORECASE)
"""A negation not followed by its subject (a question such as ``won't you`` would not read as ``will not you``)."""
CLITIC = re.compile(rf"\b([A-Za-z]+)(\s?){APOSTROPHE}(m|re|s|ll|ve)\b(\s+[A-Za-z]+)?", re.IGNORECASE)
NOT_AFTER = re.compile(r"\b([A-Za-z]+)\s+not\b", re.IGNORECASE)
CANNOT = re.compile(r"\b(can)(?:not|\s+not)\b", re.IGNORECASE)
VERB_AFTER = re.compile(rf"\b([A-Za-z]+)\s+({'|'.join(CLITICS)})\b(?=\s+(?!n{APOSTROPHE}t)[A-Za-z])", re.IGNORECASE)


def cased_like(template: str, word: str) -> str:
    """``word`` written in ``template``'s case: all capitals, a capital first letter, or as it is."""
    if len(template) > 1 and template.isupper():
        return word.upper()
    return word[:1].upper() + word[1:] if template[:1].isupper() else word


def tail_cased(host: str, word: str) -> str:
    """``word`` in capitals after a host written in capitals (``DON'T`` → ``DO NOT``), else as it is."""
    return word.upper() if len(host) > 1 and host.isupper() else word


def _expanded_negation(match: re.Match[str]) -> str:
    host, lower = match.group(1), match.group(1).lower()
    if lower == "ca":
        return cased_like(host, "can") + ("not" if not match.group(2) else " not")
    verb = {short: verb for verb, short in IRREGULAR_NEGATED.items()}.get(lower, lower)
    if verb not in NEGATED and verb not in IRREGULAR_NEGATED:
        return match.group()
    return cased_like(host, verb) + " " + tail_cased(host, "not")


def _expanded_clitic(match: re.Match[str]) -> str:
    host, clitic, following = match.group(1), match.group(3).lower(), match.group(4) or ""
    verb = next((v for v, (c, hosts) in CLITICS.items() if c == clitic and host.lower() in hosts), None)
    if verb is None:
        return match.group()
    if verb == "is" and following.strip().lower() in HAS_BEFORE:
        verb = "has"
    return f"{host} {tail_cased(host, verb)}{following}"


class ContractionsExpanded(TextPerturbation):
    """Writes every unambiguous contraction out: ``don't``/``do n't`` → ``do not``, ``won't`` → ``will not``,
    ``can't`` → ``cannot``, ``it's`` → ``it is`` (``it has`` before been/got), ``I'm`` → ``I am``,
    ``they're``, ``we've``, ``you'll`` likewise; ``'d`` and possessive ``'s`` stay (module docstring)."""

    name = "contractions-expanded"

    def perturb_text(self, text: str, rng: random.Random) -> str:
        return CLITIC.sub(_expanded_clitic, NEGATION.sub(_expanded_negation, text))


class ContractionsContracted(TextPerturbation):
    """Contracts every unambiguous pair: ``do not`` → ``don't``, ``will not`` → ``won't``, ``cannot`` →
    ``can't``, ``it is`` → ``it's``, ``I am`` → ``I'm``, ``they are``, ``we have``, ``you will``, ``he
    would`` likewise when a word follows; joined, or set off (``do n't``) in a tokenised text (``is_tokenised``)."""

    name = "contractions-contracted"

    def perturb_text(self, text: str, rng: random.Random) -> str:
        space = " " if is_tokenised(text) else ""

        def negation(match: re.Match[str]) -> str:
            host, lower = match.group(1), match.group(1).lower()
            if lower in IRREGULAR_NEGATED:
                host = cased_like(host, IRREGULAR_NEGATED[lower])
            elif lower not in NEGATED:
                return match.group()
            return host + space + tail_cased(host, "n't")

        def clitic(match: re.Match[str]) -> str:
            host, verb = match.group(1), match.group(2)
            short, hosts = CLITICS[verb.lower()]
            if host.lower() not in hosts:
                return match.group()
            return f"{host}{space}'{tail_cased(verb, short)}"

        contracted = CANNOT.sub(lambda m: f"{m.group(1)[:2]}{space}n't", text)
        return VERB_AFTER.sub(clitic, NOT_AFTER.sub(negation, contracted))
