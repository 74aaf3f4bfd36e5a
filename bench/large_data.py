"""Memory and start-up time of an audit of a large Parquet file: ``--examples 100`` must read no more rows than
it needs, so the audit's peak RSS stays below 1.5 GB however large the file.

Writes a Parquet file of ``--rows`` distinct reviews (SST-2 training sentences, each with its row number;
columns ``review``/``sentiment``, labels ``pos``/``neg``, row groups of 65,536) into a temporary folder, mines a
few patterns (a separate process, not measured), then runs ``auditor audit`` on the file as a subprocess with
``--examples 100`` (the first rows, or ``--sample``) and a small query budget, and prints the audit's peak RSS
(``os.wait4``'s ``ru_maxrss`` of that one process), the seconds from its start to its first attacked example
(the first outcome in its checkpoint) and in all, and the machine's load average before and after.

    .venv/bin/python bench/large_data.py [--rows 1000000] [--examples 100] [--budget 10] [--sample]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
sys.path.insert(0, str(ROOT))

from auditor.data import load_dataset  # noqa: E402

MODEL = ROOT.parent / "shared" / "models" / "minilm-sst2"
LIMIT_BYTES = 1.5e9
GROUP_ROWS = 65_536


def write_reviews(path: Path, rows: int) -> None:
    """``rows`` distinct reviews, written one row group at a time (the writer never holds the whole file)."""
    import pyarrow
    import pyarrow.parquet

    train = load_dataset("sst2", split="train").examples
    schema = pyarrow.schema([("review", pyarrow.string()), ("sentiment", pyarrow.string())])
    with pyarrow.parquet.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, GROUP_ROWS):
            chosen = [(i, train[i % len(train)]) for i in range(start, min(rows, start + GROUP_ROWS))]
            writer.write_table(pyarrow.table({
                "review": [f"{e.text.strip()} ({i})" for i, e in chosen],
                "sentiment": ["pos" if e.label == 1 else "neg" for _, e in chosen],
            }, schema=schema))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--examples", type=int, default=100)
    parser.add_argument("--budget", type=int, default=10)
    parser.add_argument("--sample", action="store_true", help="a seeded random sample of the rows instead of the first")
    arguments = parser.parse_args()
    auditor = [sys.executable, "-m", "auditor"]
    with tempfile.TemporaryDirectory(prefix="auditor-large-data-") as folder:
        work = Path(folder)
        data, patterns, out = work / "reviews.parquet", work / "patterns.json", work / "audit"
        started = time.perf_counter()
        write_reviews(data, arguments.rows)
        print(f"wrote {arguments.rows:,} rows, {data.stat().st_size / 1e6:.1f} MB, in {time.perf_counter() - started:.1f} s", flush=True)
        mine = [*auditor, "mine", "--model", str(MODEL), "--data", "sst2", "--examples", "16", "--min-support", "1", "--out", str(patterns)]
        subprocess.run(mine, check=True, capture_output=True)
        command = [
            *auditor, "audit", "--model", str(MODEL), "--data", str(data), "--out", str(out), "--patterns", str(patterns),
            "--text-column", "review", "--label-column", "sentiment", "--label-map", "pos=positive,neg=negative",
            "--lexicon-data", "sst2", "--examples", str(arguments.examples), "--trigger-examples", str(arguments.examples),
            "--budget", str(arguments.budget), "--baselines", "none", *(["--sample"] if arguments.sample else []),
        ]  # fmt: skip
        load_before = os.getloadavg()
        started = time.perf_counter()
        log = (work / "audit.log").open("w")
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
        first = None
        checkpoint = out / "checkpoint.jsonl"
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)  # this process's own peak RSS, once it ends
            if pid:
                break
            if first is None and checkpoint.is_file() and checkpoint.read_bytes().count(b"\n") >= 2:  # header + an outcome
                first = time.perf_counter() - started
            time.sleep(0.05)
        total = time.perf_counter() - started
        log.close()
        if os.waitstatus_to_exitcode(status):
            sys.exit(f"the audit failed ({os.waitstatus_to_exitcode(status)}):\n{(work / 'audit.log').read_text()}")
        load_after = os.getloadavg()
    print(" ".join(command[2:]).replace(folder, "$TMP"))
    peak = usage.ru_maxrss * 1024  # KiB on Linux
    print(f"peak RSS {peak / 1e9:.2f} GB ({'below' if peak < LIMIT_BYTES else 'ABOVE'} 1.5 GB)")
    print(f"first attacked example after {first:.1f} s; the audit took {total:.1f} s" if first is not None else f"no outcome seen; {total:.1f} s")
    print(f"load average (1, 5, 15 min) before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}; {os.cpu_count()} CPUs")  # fmt: skip


if __name__ == "__main__":
    main()
