"""What two runs of the same audit may legitimately differ in: how long each part took."""

from __future__ import annotations


def without_timing(data: dict, *keys: str) -> dict:
    """A report's JSON (``model_dump(mode="json")`` or ``report.json``) without its timings (the report's, each
    attack's and outcome's, each invariance check's, each success's forensics' and each forensics summary's ``seconds``) and without the top-level ``keys`` given."""
    for key in ("seconds", *keys):
        data.pop(key, None)
    for attack in [data["attack"], *data["baselines"]]:
        attack.pop("seconds")
        for outcome in attack["outcomes"]:
            outcome.pop("seconds")
            if outcome.get("forensics"):
                outcome["forensics"].pop("seconds")
    for check in data.get("invariance", []):
        check.pop("seconds")
    for summary in data.get("forensics_summary", []):
        summary.pop("seconds")
    return data
