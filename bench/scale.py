"""Audit throughput at scale, measured side by side in one run (interleaved rounds, order rotated each round):

1. Ray: the same audit (ONNX victim, one intra-op thread per worker) in this process, on 1 local Ray worker
   and on 2; throughput = attack outcomes per second of ``run_audit`` (actors started and warmed first,
   as in a long audit where their start-up is amortised). Also the driver's cost per outcome (its CPU time
   during the Ray rounds, and one fsync'ed checkpoint append), from which README "Auditing at scale" works
   out the throughput of N machines.
2. HTTP: the same audit against a real TorchServe (ONNX archive, one thread, batch 8) with one input per
   request against batched ``{"inputs": [...]}`` requests (``RemoteVictim(inputs_per_request=...)``).

    python bench/scale.py                        # both parts, small (a loaded machine)
    python bench/scale.py --examples 40 --rounds 3 --budget 30    # a quiet machine

Targets: 2 workers >= 1.6x the single process on a 2-core machine; batched HTTP >= 3x single requests.
"""

from __future__ import annotations

import argparse
import inspect
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")]))

import torch  # noqa: E402

from auditor.audit import checkpoint_identity, run_audit  # noqa: E402
from auditor.validity import build_lexicon  # noqa: E402
from auditor.checkpoint import Checkpoint  # noqa: E402
from auditor.data import load_dataset  # noqa: E402
from auditor.models import load_classifier  # noqa: E402
from auditor.schemas import AuditSettings, TriggerMiningOptions  # noqa: E402
from auditor.triggers import mine_triggers  # noqa: E402
from auditor.victims import RemoteVictim, open_victim  # noqa: E402

SST2 = Path(__file__).resolve().parents[2] / "shared" / "models" / "minilm-sst2"
ATTACKS = 3  # attribution, random, deepwordbug


def onnx_model(scratch: Path) -> Path:
    """model.onnx beside the config, tokenizer and weights of the SST-2 fixture (the attribution attack ranks
    words with explanations, which need the PyTorch weights)."""
    from auditor.export import export_onnx

    folder = scratch / "onnx"
    folder.mkdir()
    for path in SST2.iterdir():
        shutil.copy(path, folder / path.name)
    return export_onnx(load_classifier(SST2), folder / "model.onnx")


def timed_audit(victim, dataset, triggers, settings, lexicon, scratch: Path, executor=None) -> float:
    """Seconds of one complete audit from an empty checkpoint."""
    path = Path(tempfile.mkdtemp(dir=scratch)) / "checkpoint.jsonl"
    checkpoint = Checkpoint(path, checkpoint_identity(victim, dataset, triggers, settings, dataset, lexicon))
    started = time.perf_counter()
    run_audit(victim, dataset, triggers, settings, checkpoint, dataset, lexicon, executor=executor)
    return time.perf_counter() - started


def checkpoint_append_seconds(scratch: Path, outcome: dict, count: int = 200) -> float:
    checkpoint = Checkpoint(scratch / "append.jsonl", {"bench": 1})
    started = time.perf_counter()
    for index in range(count):
        checkpoint.put(f"attack:x:{index}", outcome)
    return (time.perf_counter() - started) / count


def ray_part(args: argparse.Namespace, dataset, triggers, settings, lexicon, scratch: Path) -> None:
    import ray

    from auditor.distributed import RayAttackExecutor, RayPool, VictimSpec

    model = onnx_model(scratch)
    torch.set_num_threads(1)
    victim = open_victim(str(model), threads=1)
    spec = VictimSpec(str(model), threads=1)
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)  # 1 + 2 actors, all kept warm
    try:
        with RayPool("local", workers=1) as one, RayPool("local", workers=2) as two:
            modes = {
                "single process": None,
                "Ray, 1 worker": RayAttackExecutor(one, spec, dataset, triggers, settings, lexicon),
                "Ray, 2 workers": RayAttackExecutor(two, spec, dataset, triggers, settings, lexicon),
            }
            for name, executor in modes.items():  # warm-up: actors started, victims loaded, caches filled
                if executor is not None:
                    timed_audit(victim, dataset, triggers, settings, lexicon, scratch, executor)
            seconds: dict[str, list[float]] = {name: [] for name in modes}
            driver_cpu, ray_outcomes = 0.0, 0
            names = list(modes)
            for round_ in range(args.rounds):
                for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                    cpu = time.process_time()
                    seconds[name].append(timed_audit(victim, dataset, triggers, settings, lexicon, scratch, modes[name]))
                    if modes[name] is not None:
                        driver_cpu += time.process_time() - cpu
                        ray_outcomes += ATTACKS * settings.examples
    finally:
        ray.shutdown()
    outcomes = ATTACKS * settings.examples
    print(f"\n== Ray: {settings.examples} examples x {ATTACKS} attacks, budget {settings.budget}, ONNX victim, 1 thread per worker, "
          f"{args.rounds} interleaved rounds (median) ==")  # fmt: skip
    base = outcomes / statistics.median(seconds["single process"])
    for name, values in seconds.items():
        rate = outcomes / statistics.median(values)
        print(f"{name:16s} {rate:7.2f} outcomes/s   {rate / base:5.2f}x single process   rounds: {', '.join(f'{v:.1f}s' for v in values)}")
    sample = {"index": 0, "status": "failed", "text": "x" * 100, "perturbed_text": "x" * 110, "queries": 30, "seconds": 0.5}
    append = checkpoint_append_seconds(scratch, sample)
    per_worker = outcomes / statistics.median(seconds["Ray, 1 worker"])
    driver = driver_cpu / max(1, ray_outcomes)
    print(f"driver per outcome: {driver * 1000:.2f} ms CPU (Ray rounds), checkpoint append (fsync) {append * 1000:.2f} ms wall")
    print(f"per-worker rate r = {per_worker:.2f} outcomes/s; driver ceiling 1/(cpu+append) = {1 / (driver + append):.0f} outcomes/s")


def http_part(args: argparse.Namespace, dataset, triggers, settings, lexicon, scratch: Path) -> None:
    from auditor.schemas import ServingLimits
    from auditor.serving.archive import package_model
    from auditor.serving.torchserve import ServedModel, TorchServe

    if "inputs_per_request" not in inspect.signature(RemoteVictim).parameters:
        print("\n== HTTP: skipped: this RemoteVictim sends one input per request only (batched bodies are issue 10 item 3) ==")
        return
    store = scratch / "store"
    package_model(SST2, "sst2", store, backend="onnx", limits=ServingLimits(max_batch=8), threads=1)
    with TorchServe(store, [ServedModel("sst2", batch_size=8)]) as server:
        url = f"{server.inference_url}/predictions/sst2"
        victims = {
            "single requests": RemoteVictim(url, token=server.inference_key, inputs_per_request=1),
            "batched requests": RemoteVictim(url, token=server.inference_key, inputs_per_request=8),
        }
        for victim in victims.values():  # warm-up
            victim(["a warm-up sentence"] * 16)
        seconds: dict[str, list[float]] = {name: [] for name in victims}
        names = list(victims)
        for round_ in range(args.rounds):
            for name in names[round_ % 2 :] + names[: round_ % 2]:
                seconds[name].append(timed_audit(victims[name], dataset, triggers, settings, lexicon, scratch))
        for victim in victims.values():
            victim.close()
    outcomes = ATTACKS * settings.examples
    print(f"\n== HTTP: the same audit against TorchServe (ONNX, 1 thread, server batch 8), {args.rounds} interleaved rounds (median) ==")
    base = outcomes / statistics.median(seconds["single requests"])
    for name, values in seconds.items():
        rate = outcomes / statistics.median(values)
        print(f"{name:16s} {rate:7.2f} outcomes/s   {rate / base:5.2f}x single requests   rounds: {', '.join(f'{v:.1f}s' for v in values)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=12, help="dev examples audited per round")
    parser.add_argument("--budget", type=int, default=20, help="queries per attacked example")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds per part")
    parser.add_argument("--part", choices=["all", "ray", "http"], default="all")
    args = parser.parse_args()
    print(f"measured on {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")
    classifier, train = load_classifier(SST2), load_dataset("sst2", split="train")
    lexicon = build_lexicon(train, classifier.labels)
    triggers = mine_triggers(classifier, train, TriggerMiningOptions(examples=48, min_support=2), exclude=set(lexicon.words))
    dataset = load_dataset("sst2", split="dev")
    settings = AuditSettings(
        examples=args.examples, budget=args.budget, max_words=3, top_k=10, positions="pattern",
        baselines=["random", "deepwordbug"], trigger_top_k=0, trigger_examples=1, seed=0, forensics=False,  # attack throughput only
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="auditor-scale-") as directory:
        scratch = Path(directory)
        if args.part in ("all", "ray"):
            ray_part(args, dataset, triggers, settings, lexicon, scratch)
        if args.part in ("all", "http"):
            http_part(args, dataset, triggers, settings, lexicon, scratch)
    print(f"load average {os.getloadavg()[0]:.1f} at the end (measured under load when above the core count)")


if __name__ == "__main__":
    main()
