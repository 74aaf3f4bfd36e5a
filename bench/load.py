"""Load test of served classifiers: N concurrent clients × M requests each against TorchServe on loopback.

Prints per model the throughput, p50/p99 latency and error count, and the throughput ratio of each model
to the first, measured side by side in one run on the same inputs (SST-2 dev sentences).

    python bench/load.py                                   # starts a server on the archives in model_store/
    python bench/load.py --url http://127.0.0.1:8080 --key-file key_file.json   # a running server

Models default to ``sst2`` (full, PyTorch) and ``sst2-pruned-onnx`` (head-pruned, ONNX Runtime); build
them as the README's "Serving with TorchServe" section shows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import requests

from auditor.data import load_dataset
from auditor.serving import ServedModel, TorchServe

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass
class LoadResult:
    model: str
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    @property
    def throughput(self) -> float:
        return (self.requests - self.errors) / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


def run_load(url: str, key: str, model: str, texts: list[str], clients: int, per_client: int) -> LoadResult:
    """``clients`` threads, each with its own keep-alive connection, send ``per_client`` requests in turn."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    start_barrier = threading.Barrier(clients)

    def client(index: int) -> None:
        nonlocal errors
        session = requests.Session()
        session.headers.update({"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        start_barrier.wait()
        for i in range(per_client):
            body = json.dumps({"text": texts[(index * per_client + i) % len(texts)]})
            began = time.perf_counter()
            try:
                ok = session.post(f"{url}/predictions/{model}", data=body, timeout=60).status_code == 200
            except requests.RequestException:
                ok = False
            elapsed = (time.perf_counter() - began) * 1000
            with lock:
                latencies.append(elapsed)
                errors += not ok

    began = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    return LoadResult(model, clients * per_client, errors, time.perf_counter() - began, latencies)


def report(results: list[LoadResult], clients: int, per_client: int) -> None:
    print(f"{clients} clients x {per_client} requests per model, POST /predictions, SST-2 dev sentences")
    print(f"{'model':<22}{'requests':>9}{'errors':>8}{'seconds':>9}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'x first':>9}")
    for result in results:
        ratio = result.throughput / results[0].throughput
        print(
            f"{result.model:<22}{result.requests:>9}{result.errors:>8}{result.seconds:>9.2f}{result.throughput:>9.1f}"
            f"{result.percentile(0.5):>9.1f}{result.percentile(0.99):>9.1f}{ratio:>9.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="sst2,sst2-pruned-onnx", help="comma-separated model names (first = baseline)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=250, help="requests per client")
    parser.add_argument("--store", type=Path, default=Path("model_store"), help="start a server on these archives")
    parser.add_argument("--url", help="inference address of a running server (loopback only)")
    parser.add_argument("--key-file", type=Path, help="key_file.json of the running server")
    parser.add_argument("--batch-size", type=int, default=8, help="server-side batch size when starting a server")
    args = parser.parse_args()
    if not (1 <= args.clients <= 64 and 1 <= args.requests <= 10_000):
        parser.error("clients must be in 1..64 and requests in 1..10000")
    models = [name.strip() for name in args.models.split(",") if name.strip()]
    texts = [example.text for example in load_dataset("sst2").examples]

    def measure(url: str, key: str) -> list[LoadResult]:
        results = []
        for model in models:
            run_load(url, key, model, texts, args.clients, 5)  # warm-up
            results.append(run_load(url, key, model, texts, args.clients, args.requests))
        return results

    if args.url:
        if urlparse(args.url).hostname not in LOOPBACK:
            parser.error("--url must be a loopback address")
        if args.key_file is None:
            parser.error("--url needs --key-file (the server's key_file.json)")
        key = json.loads(args.key_file.read_text())["inference"]["key"]
        results = measure(args.url.rstrip("/"), key)
    else:
        served = [ServedModel(model, batch_size=args.batch_size, max_batch_delay_ms=5) for model in models]
        with TorchServe(args.store, served) as server:
            results = measure(server.inference_url, server.inference_key)
    report(results, args.clients, args.requests)


if __name__ == "__main__":
    main()
