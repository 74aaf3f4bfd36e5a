"""Shadow mode on a real TorchServe: the attribution-pruned 50 % SST-2 model (ONNX Runtime, float) as primary, the
full model (PyTorch, ``sst2-shadow``, workers at niceness 10) as its shadow on the same server, the production scenario of README "Comparing pruned and
full models in production".

1. Replay: the 872 SST-2 dev sentences, one ``POST /predictions`` each, from 4 concurrent clients, sample rate
   1.0, through ``sst2-pruned50-replay`` (comparisons database ``--db``). Every request must end as a row or a
   counted drop; the rows' disagreements (primary label != shadow label) are compared with what ``auditor
   compare`` finds for the same two models on the same sentences (its victims: the pruned model's ONNX graph
   and the full model, ``victim(inputs).argmax(1)``); a sentence whose probabilities sit within 1e-5 of a tie
   under either model may differ, and is counted (``ties``).
2. Latency: interleaved rounds of 4 clients on the same pruned model with shadowing (``sst2-pruned50-shadowed``,
   rate 1.0, its own database) and without (``sst2-pruned50-onnx``), the order alternating each round; after a
   round with shadowing the next waits until the shadow has caught up, so that no round measures another's
   shadow work. Prints primary p50/p99 of both and ``p99_ratio`` = p99 with / p99 without (target <= 1.15).

The last line printed is one JSON object: ``requests``, ``recorded``, ``dropped``, ``disagreements``,
``compare_disagreements``, ``ties``, ``p99_ratio``, ``db``, ``non_200``.

    python bench/shadow.py --store out/shadow-bench      # builds out/sst2-pruned50 first when it is missing
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from auditor.attack import attacked_text
from auditor.data import load_dataset
from auditor.errors import InputError
from auditor.live.records import input_digest, read_drops, read_records
from auditor.schemas import ShadowSettings
from auditor.serving.archive import package_model
from auditor.serving.loadtest import LoadResult, percentile, run_load
from auditor.serving.torchserve import ServedModel, TorchServe
from auditor.victims import open_victim

SHARED_SST2 = Path(__file__).resolve().parents[2] / "shared" / "models" / "minilm-sst2"
TIE = 1e-5


def build_pruned(pruned_dir: Path) -> None:
    """``auditor heads`` (attribution, 100 SST-2 dev examples) then ``auditor prune --fraction 0.5 --onnx``, as README
    "Serving" does for bench/load.py (without the int8 graph, which this bench does not serve)."""
    heads = pruned_dir.parent / f"{pruned_dir.name}-heads.json"
    auditor = [sys.executable, "-m", "auditor"]
    for command in (
        [*auditor, "heads", "--model", str(SHARED_SST2), "--data", "sst2", "--examples", "100", "--out", str(heads)],
        [*auditor, "prune", "--model", str(SHARED_SST2), "--importance", str(heads), "--fraction", "0.5", "--out", str(pruned_dir), "--onnx",
         "--data", "sst2"],
    ):  # fmt: skip
        print("$", shlex.join(command), flush=True)
        subprocess.run(command, check=True)


def database_counts(database: Path) -> tuple[int, int]:
    """(rows, drops) of a comparisons database; (0, 0) before a worker has created it and its tables."""
    try:
        return sum(1 for _ in read_records([database])), sum(read_drops([database]).values())
    except InputError:
        return 0, 0


def wait_for(server: TorchServe, database: Path, expected: int, timeout_s: float = 600.0) -> tuple[int, int]:
    """The database's (rows, drops) once they account for ``expected`` sampled requests; SystemExit when the
    server stopped or the timeout passed first."""
    deadline = time.monotonic() + timeout_s
    while True:
        rows, drops = database_counts(database)
        if rows + drops >= expected:
            return rows, drops
        if not server.running or time.monotonic() > deadline:
            raise SystemExit(f"{database}: {rows} rows and {drops} drops of {expected} requests, and the server "
                             f"{'stopped' if not server.running else f'did not write more in {timeout_s:g} s'}; see {server.logs}")  # fmt: skip
        time.sleep(0.5)


def replay(server: TorchServe, model: str, texts: list[str], clients: int) -> LoadResult:
    """Every text once, split evenly over ``clients`` concurrent clients (run_load's client i sends
    texts[i * n / clients :][: n / clients])."""
    if len(texts) % clients:
        raise SystemExit(f"{len(texts)} sentences do not split evenly over {clients} clients")
    result = LoadResult(model)
    run_load(server.inference_url, server.inference_key, result, texts, clients, len(texts) // clients, offset=0)
    return result


def compare_disagreements(pruned_onnx: Path, examples: list) -> tuple[set[int], list[list[float]], list[list[float]]]:
    """What ``auditor compare`` finds (``auditor.compare.compare_side``: ``victim(inputs).argmax(1)`` per model): the
    indices where the two models' labels differ, and both models' probabilities."""
    inputs = [attacked_text(example).tokenizer_input for example in examples]
    full, pruned = open_victim(str(SHARED_SST2)), open_victim(str(pruned_onnx))
    full_probabilities, pruned_probabilities = full(inputs), pruned(inputs)
    differ = {i for i, (a, b) in enumerate(zip(full_probabilities.argmax(1), pruned_probabilities.argmax(1))) if a != b}
    return differ, pruned_probabilities.tolist(), full_probabilities.tolist()


def near_tie(probabilities: list[float]) -> bool:
    top = sorted(probabilities, reverse=True)
    return top[0] - top[1] <= 2 * TIE  # each of the two largest within 1e-5 of their midpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, required=True, help="model store folder for the archives (built here)")
    parser.add_argument("--pruned", type=Path, default=Path("out/sst2-pruned50"), help="auditor prune folder with model.onnx (built when missing)")
    parser.add_argument("--db", type=Path, help="the replay's comparisons database (default: STORE/shadow.db; replaced)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=6, help="interleaved latency rounds")
    parser.add_argument("--requests", type=int, default=40, help="requests per client, model and latency round")
    parser.add_argument("--workers", type=int, default=2, help="workers per model (4 models on one server)")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per worker")
    parser.add_argument("--shadow-niceness", type=int, default=10, help="niceness of the shadow's workers (when its archive is built)")
    args = parser.parse_args()
    if not (1 <= args.clients <= 64 and 1 <= args.rounds <= 100 and 1 <= args.requests <= 10_000 and 1 <= args.workers <= 8):
        parser.error("clients must be in 1..64, rounds in 1..100, requests in 1..10000, workers in 1..8")
    store = args.store.resolve()
    database = (args.db or store / "shadow.db").resolve()
    rounds_database = store / "latency-rounds.db"
    for stale in (database, rounds_database):
        for path in (stale, stale.with_name(stale.name + "-wal"), stale.with_name(stale.name + "-shm")):
            path.unlink(missing_ok=True)
    if not (args.pruned / "model.onnx").is_file():
        build_pruned(args.pruned)
    pruned_onnx = (args.pruned / "model.onnx").resolve()

    names = ["sst2-pruned50-replay", "sst2-pruned50-shadowed", "sst2-pruned50-onnx", "sst2-shadow"]
    workdir = store / "server"  # kept: its logs/ hold the workers' logs of the run
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    server = TorchServe(store, [ServedModel(name, workers=args.workers) for name in names], startup_timeout_s=900, workdir=workdir)
    # the shadowed archives name this server's inference port, chosen when it was created: built for each run
    for name, path in (("sst2-pruned50-replay", database), ("sst2-pruned50-shadowed", rounds_database)):
        # the replay is a burst of 872 requests: a queue that holds all of them (the default 256 is for steady traffic)
        shadow = ShadowSettings(model="sst2-shadow", url=server.inference_url, database=str(path), queue_size=1000)
        package_model(args.pruned, name, store, backend="onnx", onnx_file=pruned_onnx, threads=args.threads, shadow=shadow)
    if not (store / "sst2-pruned50-onnx.mar").is_file():
        package_model(args.pruned, "sst2-pruned50-onnx", store, backend="onnx", onnx_file=pruned_onnx, threads=args.threads)
    if not (store / "sst2-shadow.mar").is_file():
        package_model(SHARED_SST2, "sst2-shadow", store, threads=args.threads, niceness=args.shadow_niceness)

    examples = load_dataset("sst2").examples
    texts = [example.text for example in examples]
    with server:
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        print(f"load average before the run: {load}", flush=True)
        replayed = replay(server, "sst2-pruned50-replay", texts, args.clients)
        recorded, dropped = wait_for(server, database, len(texts))
        print(f"replay: {replayed.requests} requests from {args.clients} clients, {replayed.errors} not 200, {recorded} recorded, "
              f"{dropped} dropped {read_drops([database])}", flush=True)  # fmt: skip

        # run_load sends to the model its result is named after
        with_shadow, without = LoadResult("sst2-pruned50-shadowed"), LoadResult("sst2-pruned50-onnx")
        for r in range(args.rounds):
            for result in [with_shadow, without] if r % 2 == 0 else [without, with_shadow]:
                run_load(server.inference_url, server.inference_key, result, texts, args.clients, args.requests, offset=r * args.clients * args.requests)
                if result is with_shadow:  # every request answered 200 is sampled (rate 1.0)
                    wait_for(server, rounds_database, with_shadow.requests - with_shadow.errors)
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])

    records = list(read_records([database]))
    by_digest = {record.input_sha256: record for record in records}
    served = [by_digest.get(input_digest(text)) for text in texts]
    recorded_differ = {i for i, record in enumerate(served) if record is not None and record.primary_label != record.shadow_label}

    differ, pruned_probabilities, full_probabilities = compare_disagreements(pruned_onnx, examples)
    mismatched = recorded_differ ^ differ
    ties = sum(near_tie(pruned_probabilities[i]) or near_tie(full_probabilities[i]) for i in mismatched)
    disagreements = sum(record.primary_label != record.shadow_label for record in records)
    ratio = percentile(with_shadow.latencies_ms, 0.99) / percentile(without.latencies_ms, 0.99)
    print(f"latency rounds: {args.rounds} interleaved, {args.clients} clients x {args.requests} requests per model and round; "
          f"load average after: {load}")  # fmt: skip
    for result, title in ((with_shadow, "with shadowing"), (without, "without shadowing")):
        print(f"  {title:<18} {result.model:<24} requests {result.requests:>6} not 200 {result.errors:>4} p50 {result.percentile(0.5):7.1f} ms "
              f"p99 {result.percentile(0.99):7.1f} ms")  # fmt: skip
    print(f"disagreements: {disagreements} recorded, {len(differ)} by compare, {len(mismatched)} sentences differ ({ties} within {TIE} of a tie)")
    summary = {
        "requests": replayed.requests, "recorded": recorded, "dropped": dropped, "disagreements": disagreements,
        "compare_disagreements": len(differ), "ties": ties, "p99_ratio": round(ratio, 3), "db": str(database),
        "non_200": replayed.errors + with_shadow.errors + without.errors,
    }  # fmt: skip
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
