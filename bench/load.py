"""Load test of served classifiers: N concurrent clients × M requests each against TorchServe on loopback,
the models measured in interleaved rounds in one run (round r sends M/R requests per client to every model,
in an order rotated each round), so that a machine whose load changes affects every model alike.

Prints per model its accuracy on the SST-2 dev set (through the server, batched ``{"inputs"}`` requests),
throughput, p50/p99 latency, error count, and the throughput ratio to the first model.

    # archives: the full model and the attribution-pruned 50 % one as float and int8 ONNX (README, "Serving")
    python bench/load.py --build out/sst2-pruned50     # package them from an `auditor prune --int8` folder
    python bench/load.py                               # start a server on model_store/ and measure
    python bench/load.py --url http://127.0.0.1:8080 --key-file key_file.json   # a running server

Models default to ``sst2`` (full, PyTorch), ``sst2-pruned50-onnx`` and ``sst2-pruned50-int8`` (half of the
heads removed in attribution order, ONNX Runtime float32 and int8).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import requests

from auditor.data import load_dataset
from auditor.archive import package_model
from auditor.serving import ServedModel, TorchServe

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
SHARED_SST2 = Path(__file__).resolve().parents[2] / "shared" / "models" / "minilm-sst2"
DEFAULT_MODELS = "sst2,sst2-pruned50-onnx,sst2-pruned50-int8"


@dataclass
class LoadResult:
    """Requests, errors, latencies and seconds of one model, summed over the rounds."""

    model: str
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    accuracy: float = float("nan")

    @property
    def throughput(self) -> float:
        return (self.requests - self.errors) / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


def run_load(url: str, key: str, result: LoadResult, texts: list[str], clients: int, per_client: int, offset: int) -> None:
    """``clients`` threads, each with its own keep-alive connection, send ``per_client`` requests in turn;
    adds the requests, errors, latencies and wall time to ``result``."""
    lock = threading.Lock()
    start_barrier = threading.Barrier(clients)

    def client(index: int) -> None:
        session = requests.Session()
        session.headers.update({"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        start_barrier.wait()
        for i in range(per_client):
            body = json.dumps({"text": texts[(offset + index * per_client + i) % len(texts)]})
            began = time.perf_counter()
            try:
                ok = session.post(f"{url}/predictions/{result.model}", data=body, timeout=60).status_code == 200
            except requests.RequestException:
                ok = False
            elapsed = (time.perf_counter() - began) * 1000
            with lock:
                result.latencies_ms.append(elapsed)
                result.errors += not ok
        session.close()

    began = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    result.seconds += time.perf_counter() - began
    result.requests += clients * per_client


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


def measure(url: str, key: str, models: list[str], clients: int, per_client: int, rounds: int) -> list[LoadResult]:
    dataset = load_dataset("sst2")
    texts, labels = [e.text for e in dataset.examples], [int(e.label) for e in dataset.examples]
    results = {model: LoadResult(model) for model in models}
    for model in models:  # also the warm-up
        results[model].accuracy = served_accuracy(url, key, model, texts, labels)
    shares = [per_client // rounds + (r < per_client % rounds) for r in range(rounds)]
    for r, share in enumerate(shares):
        for k in range(len(models)):
            model = models[(r + k) % len(models)]
            run_load(url, key, results[model], texts, clients, share, offset=r * clients * share)
    return [results[model] for model in models]


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
    parser.add_argument("--batch-size", type=int, default=8, help="server-side batch size when starting a server")
    parser.add_argument("--batch-delay-ms", type=int, default=5, help="server-side batching delay when starting a server")
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
        results = measure(args.url.rstrip("/"), key, models, args.clients, args.requests, args.rounds)
    else:
        served = [ServedModel(model, batch_size=args.batch_size, max_batch_delay_ms=args.batch_delay_ms) for model in models]
        with TorchServe(args.store, served) as server:
            results = measure(server.inference_url, server.inference_key, models, args.clients, args.requests, args.rounds)
    report(results, args.clients, args.requests, args.rounds)


if __name__ == "__main__":
    main()
