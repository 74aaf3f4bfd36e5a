"""What two runs of the same audit may legitimately differ in: how long each part took."""

from __future__ import annotations


def without_timing(data: dict, *keys: str) -> dict:
    """A report's JSON (``model_dump(mode="json")`` or ``report.json``) without its timings (the report's, each
    attack's and outcome's (the adaptive audit's too), each invariance check's, each success's forensics', each
    forensics summary's and the causal check's ``seconds``) and without the top-level ``keys`` given."""
    for key in ("seconds", *keys):
        data.pop(key, None)
    for attack in [data["attack"], *data["baselines"], *(data.get("defended") or [])]:
        attack.pop("seconds")
        for outcome in attack["outcomes"]:
            outcome.pop("seconds")
            if outcome.get("forensics"):
                outcome["forensics"].pop("seconds")
    for check in data.get("invariance", []):
        check.pop("seconds")
    for summary in data.get("forensics_summary", []):
        summary.pop("seconds")
    if data.get("causal_check"):
        data["causal_check"].pop("seconds")
    return data
