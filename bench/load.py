"""Load test of served classifiers: N concurrent clients × M requests each against TorchServe on loopback,
the models measured in interleaved rounds in one run (round r sends M/R requests per client to every model,
in an order rotated each round), so that a machine whose load changes affects every model alike.

Prints per model its accuracy on the SST-2 dev set (through the server, batched ``{"inputs"}`` requests),
throughput, p50/p99 latency, error count, and the throughput ratio to the first model.

When it starts the server, it also prints the resident memory (RSS) of each model's worker processes, idle
(all workers READY, before any request) and at the end (after the load and any storms' explanations).

With ``--storm``, each round also runs one explanation storm per model (``auditor.serving.loadtest.STORMS``, in
turn: 4 prediction clients while 7 to 16 explanations at the limits arrive at once) and a quiet stretch of
the same length, and prints prediction p50/p99/max with and without the storm and the explanations' statuses.

    # archives: the full model and the attribution-pruned 50 % one as float and int8 ONNX (README, "Serving")
    python bench/load.py --build out/sst2-pruned50     # package them from an `auditor prune --int8` folder
    python bench/load.py --storm                       # start a server on model_store/ and measure
    python bench/load.py --url http://127.0.0.1:8080 --key-file key_file.json   # a running server

Models default to ``sst2`` (full, PyTorch), ``sst2-pruned50-onnx`` and ``sst2-pruned50-int8`` (half of the
heads removed in attribution order, ONNX Runtime float32 and int8).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from urllib.parse import urlparse

import requests

from auditor.serving.archive import package_model
from auditor.data import load_dataset
from auditor.serving.loadtest import STORM_HEADER, STORMS, LoadResult, StormResult, percentile, run_load, run_storm
from auditor.serving.torchserve import ServedModel, TorchServe, resident_bytes

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
SHARED_SST2 = Path(__file__).resolve().parents[2] / "shared" / "models" / "minilm-sst2"
DEFAULT_MODELS = "sst2,sst2-pruned50-onnx,sst2-pruned50-int8"


def served_accuracy(url: str, key: str, model: str, texts: list[str], labels: list[int], per_request: int = 8) -> float:
    """Accuracy of the served model on (texts, labels), asked in ``{"inputs"}`` requests of ``per_request``."""
    headers = {"Authorization": f"Bearer {key}"}
    correct = 0
    for start in range(0, len(texts), per_request):
        body = {"inputs": [{"text": text} for text in texts[start : start + per_request]]}
        answer = requests.post(f"{url}/predictions/{model}", json=body, headers=headers, timeout=120)
        answer.raise_for_status()
        correct += sum(p["label_id"] == label for p, label in zip(answer.json(), labels[start : start + per_request]))
    return correct / len(texts)


def measure(url: str, key: str, models: list[str], clients: int, per_client: int, rounds: int, storm: bool) -> tuple[list[LoadResult], dict]:
    """Plain load rounds, and with ``storm`` one storm per model per round (the storms in turn)."""
    dataset = load_dataset("sst2")
    texts, labels = [e.text for e in dataset.examples], [int(e.label) for e in dataset.examples]
    results = {model: LoadResult(model) for model in models}
    storms: dict[tuple[str, str], StormResult] = {}
    for model in models:  # also the warm-up
        results[model].accuracy = served_accuracy(url, key, model, texts, labels)
    shares = [per_client // rounds + (r < per_client % rounds) for r in range(rounds)]
    for r, share in enumerate(shares):
        for k in range(len(models)):
            model = models[(r + k) % len(models)]
            run_load(url, key, results[model], texts, clients, share, offset=r * clients * share)
            if storm:
                chosen = STORMS[r % len(STORMS)]
                storms.setdefault((model, chosen.name), StormResult(chosen.name)).merge(run_storm(url, key, model, chosen, texts))
    return [results[model] for model in models], storms


def report_storms(models: list[str], storms: dict[tuple[str, str], StormResult]) -> None:
    print("\nexplanation storms: 4 prediction clients (POST /predictions) during each storm and during a quiet stretch as long")
    print("right after it; explanations at the limits (128 tokens, 20 steps), each sent once; latencies of the predictions")
    for model in models:
        rows = [result for (name, _), result in storms.items() if name == model]
        if not rows:
            continue
        print(f"\n{model}\n{STORM_HEADER}")
        combined = StormResult("all storms")
        for row in rows:
            print(row.summary())
            combined.merge(row)
        print(combined.summary())
        ratio = percentile(combined.storm_ms, 0.99) / percentile(combined.quiet_ms, 0.99)
        failed = sum(count for status, count in combined.prediction_statuses.items() if status != 200)
        print(f"p99 under storms / quiet: {ratio:.2f}; max under storms: {max(combined.storm_ms):.0f} ms; predictions not 200: {failed}")


def report(results: list[LoadResult], clients: int, per_client: int, rounds: int) -> None:
    print(f"{clients} clients x {per_client} requests per model in {rounds} interleaved rounds, POST /predictions, SST-2 dev sentences")
    print("(measured under load: the machine is shared; rerun on a quiet machine for clean numbers:)")
    print("  python " + " ".join(shlex.quote(argument) for argument in sys.argv))
    print(f"{'model':<22}{'accuracy':>9}{'requests':>9}{'errors':>8}{'seconds':>9}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'x first':>9}")
    for result in results:
        ratio = result.throughput / results[0].throughput
        print(
            f"{result.model:<22}{result.accuracy:>9.4f}{result.requests:>9}{result.errors:>8}{result.seconds:>9.2f}{result.throughput:>9.1f}"
            f"{result.percentile(0.5):>9.1f}{result.percentile(0.99):>9.1f}{ratio:>9.2f}"
        )


def worker_memory_mb(server: TorchServe, models: list[str]) -> dict[str, list[float]]:
    """Resident memory of each model's worker processes, in MB (10⁶ bytes)."""
    return {model: [resident_bytes(pid) / 1e6 for pid in server.model_worker_pids(model)] for model in models}


def report_memory(idle: dict[str, list[float]], after: dict[str, list[float]], storm: bool) -> None:
    print(f"\nresident memory per worker, MB (min-max over the model's workers): idle, and after the load{' and storms' if storm else ''}")
    for model in idle:
        print(f"{model:<22} idle {min(idle[model]):.0f}-{max(idle[model]):.0f}   after {min(after[model]):.0f}-{max(after[model]):.0f}"
              f"   workers {len(idle[model])}")  # fmt: skip


def build(pruned_dir: Path, store: Path, threads: int) -> None:
    """The three default archives: the shared SST-2 model (PyTorch) and ``pruned_dir`` (an ``auditor prune
    --int8`` folder) with its float and int8 ONNX graphs; ``threads`` intra-op threads per worker."""
    package_model(SHARED_SST2, "sst2", store, threads=threads)
    package_model(pruned_dir, "sst2-pruned50-onnx", store, backend="onnx", onnx_file=pruned_dir / "model.onnx", threads=threads)
    package_model(pruned_dir, "sst2-pruned50-int8", store, backend="onnx", onnx_file=pruned_dir / "model.int8.onnx", threads=threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated model names (first = baseline)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=250, help="requests per client and model")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds the requests are split into")
    parser.add_argument("--store", type=Path, default=Path("model_store"), help="start a server on these archives")
    parser.add_argument("--url", help="inference address of a running server (loopback only)")
    parser.add_argument("--key-file", type=Path, help="key_file.json of the running server")
    parser.add_argument("--batch-size", type=int, default=ServedModel.batch_size, help="server-side batch size when starting a server")
    parser.add_argument("--batch-delay-ms", type=int, default=ServedModel.max_batch_delay_ms, help="server-side batching delay when starting a server")
    parser.add_argument("--workers", type=int, default=ServedModel.workers, help="workers per model when starting a server")
    parser.add_argument("--storm", action="store_true", help="also run an explanation storm per model in each round")
    parser.add_argument("--build", type=Path, metavar="PRUNED_DIR", help="package the default archives into --store and exit")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per worker of the archives --build makes")
    args = parser.parse_args()
    if args.build:
        build(args.build, args.store, args.threads)
        return
    if not (1 <= args.clients <= 64 and 1 <= args.requests <= 10_000 and 1 <= args.rounds <= args.requests):
        parser.error("clients must be in 1..64, requests in 1..10000, rounds in 1..requests")
    models = [name.strip() for name in args.models.split(",") if name.strip()]
    if args.url:
        if urlparse(args.url).hostname not in LOOPBACK:
            parser.error("--url must be a loopback address")
        if args.key_file is None:
            parser.error("--url needs --key-file (the server's key_file.json)")
        key = json.loads(args.key_file.read_text())["inference"]["key"]
        results, storms = measure(args.url.rstrip("/"), key, models, args.clients, args.requests, args.rounds, args.storm)
    else:
        served = [ServedModel(model, batch_size=args.batch_size, max_batch_delay_ms=args.batch_delay_ms, workers=args.workers) for model in models]
        with TorchServe(args.store, served) as server:
            idle = worker_memory_mb(server, models)
            results, storms = measure(server.inference_url, server.inference_key, models, args.clients, args.requests, args.rounds, args.storm)
            after = worker_memory_mb(server, models)
    report(results, args.clients, args.requests, args.rounds)
    report_storms(models, storms)
    if not args.url:
        report_memory(idle, after, args.storm)


if __name__ == "__main__":
    main()
