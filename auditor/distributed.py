"""Audits, pattern mining and head importance on a Ray cluster (``--ray ADDRESS --workers N``).

The work is cut into items (one (attack, example) pair of an audit, one batch of mining or head importance)
and streamed over ``N`` Ray actors. Each actor builds what it needs once from a small serialisable job (the
victim from its location, the attacks from the patterns and settings, the model from its folder) and then
runs item after item; results come back as they finish (``ray.wait``). The driver writes an audit's outcomes
to the same JSON-lines checkpoint as the single-process run, in arrival order, and every result is a
function of its item alone, so the report (ordered by example index) is the one a single process writes.

Faults: an actor that dies (``ray.kill``, its process killed, its node lost) is replaced and the items it
had not returned are queued again; results of a dead actor are never read, so nothing is counted twice.
A killed driver loses nothing either: rerun the same command and the checkpoint supplies what finished.

Only this module imports Ray, and only the CLI's ``--ray`` imports this module.
"""

from __future__ import annotations

import os
import re
from collections import Counter, deque
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import ray
import ray.exceptions

from auditor.errors import AuditorError, InputError

ADDRESS_PATTERN = re.compile(r"^(local|auto|ray://[^\s:/]+:\d+|[^\s:/]+:\d+)$")


def check_address(address: str) -> str:
    """``local`` (start a cluster on this machine), ``auto`` (join the one ``ray start`` runs here),
    ``ray://HOST:PORT`` (Ray Client) or ``HOST:PORT`` (a head node's GCS address)."""
    if not ADDRESS_PATTERN.match(address):
        raise InputError(f"a Ray address is local, auto, ray://HOST:PORT or HOST:PORT, got {address!r}")
    return address


def check_workers(workers: int) -> int:
    if workers < 1:
        raise InputError(f"the number of Ray workers must be at least 1, got {workers}")
    return workers


class Job(Protocol):
    """What an actor runs: ``build()`` (once per actor) returns the function applied to each item."""

    def build(self) -> Callable[[Any], Any]: ...


class _Worker:
    """A Ray actor running one job's items one at a time, with ``threads`` intra-op threads."""

    def __init__(self, job: Job, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self._run = job.build()

    def pid(self) -> int:
        return os.getpid()

    def run(self, item: Any) -> Any:
        return self._run(item)


@dataclass
class _Slot:
    actor: Any
    pid: Any  # ObjectRef of the actor's process id
    pending: dict[Any, Hashable] = field(default_factory=dict)  # ObjectRef -> item, in submission order


class RayPool:
    """``workers`` actors per job on the cluster at ``address``, each given ``threads`` CPUs.

    ``workers`` defaults to one per CPU of the cluster. ``depth`` items are in flight per actor (one
    running, the rest queued behind it), enough to hide the round trip without piling work on an actor that
    may die. At most ``max_replacements`` dead actors are replaced per job (default: 3 per worker) before
    the job fails. Use it as a context manager: entering connects (starting a local cluster for ``local``,
    shut down on exit), unless this process is connected to Ray already.
    """

    def __init__(
        self, address: str, workers: int | None = None, threads: int = 1, depth: int = 2, max_replacements: int | None = None
    ) -> None:
        self.address = check_address(address)
        self.workers = None if workers is None else check_workers(workers)
        self.threads = threads
        self.depth = depth
        self._max_replacements = max_replacements
        self.replaced = 0
        self.slots: list[_Slot] = []
        self._job: Job | None = None
        self._job_ref: Any = None
        self._owned = False

    def __enter__(self) -> RayPool:
        if not ray.is_initialized():
            options: dict[str, Any] = {"log_to_driver": False, "logging_level": "warning"}
            if self.address == "local":
                options["include_dashboard"] = False
                if self.workers is not None:
                    options["num_cpus"] = self.workers * self.threads
            try:
                ray.init(address=self.address, **options)
            except ConnectionError as error:
                raise AuditorError(f"cannot join the Ray cluster at {self.address}: {str(error).splitlines()[0]}") from None
            self._owned = True
        if self.workers is None:
            self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)) // self.threads)
        return self

    @property
    def max_replacements(self) -> int:
        return 3 * (self.workers or 1) if self._max_replacements is None else self._max_replacements

    def __exit__(self, *exc_info: object) -> None:
        self._stop_actors()
        if self._owned:
            ray.shutdown()
            self._owned = False

    def pids(self) -> list[int]:
        """Process ids of the live actors (waits for them to start)."""
        return ray.get([slot.pid for slot in self.slots])

    def _start(self, job_ref: Any) -> _Slot:
        actor = ray.remote(_Worker).options(num_cpus=self.threads, max_restarts=0).remote(job_ref, self.threads)
        return _Slot(actor, actor.pid.remote())

    def _stop_actors(self) -> None:
        for slot in self.slots:
            ray.kill(slot.actor)
        self.slots = []
        self._job = self._job_ref = None

    def stream(self, job: Job, items: Sequence[Hashable]) -> Iterator[tuple[Hashable, Any]]:
        """(item, result) for every item, each exactly once, in the order they finish. The actors stay up
        for the next stream of the same job object until the pool closes."""
        queue = deque(items)
        if not queue:
            return
        if job is not self._job or not self.slots:  # the actors of the previous stream serve the same job again
            self._stop_actors()
            self._job, self._job_ref = job, ray.put(job)
            self.slots = [self._start(self._job_ref) for _ in range(min(self.workers, len(queue)))]
        job_ref = self._job_ref
        self.replaced = 0
        completed = False
        try:
            while True:
                for slot in self.slots:
                    while queue and len(slot.pending) < self.depth:
                        item = queue.popleft()
                        slot.pending[slot.actor.run.remote(item)] = item
                owners = {ref: slot for slot in self.slots for ref in slot.pending}
                if not owners:
                    break
                (ref,), _ = ray.wait(list(owners), num_returns=1)
                slot = owners[ref]
                item = slot.pending.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayActorError as error:
                    if error.actor_init_failed:
                        raise AuditorError(f"a Ray worker could not start: {_last_line(str(error))}") from None
                    queue.extendleft(reversed([item, *slot.pending.values()]))  # its unfinished items, in order
                    self._replace(slot, job_ref, error)
                    continue
                except ray.exceptions.RayTaskError as error:
                    cause = error.cause
                    if isinstance(cause, AuditorError):
                        raise cause from None
                    raise AuditorError(f"a Ray worker failed on {item!r}: {type(cause).__name__}: {cause}") from None
                yield item, result
            completed = True
        finally:
            if not completed:
                self._stop_actors()

    def _replace(self, slot: _Slot, job_ref: Any, error: Exception) -> None:
        self.replaced += 1
        if self.replaced > self.max_replacements:
            raise AuditorError(f"Ray workers died {self.replaced} times; giving up: {_last_line(str(error))}")
        ray.kill(slot.actor)
        fresh = self._start(job_ref)
        slot.actor, slot.pid, slot.pending = fresh.actor, fresh.pid, {}

    def map(self, job: Job, items: Sequence[Hashable]) -> list[Any]:
        """Every item's result, in the order of ``items``."""
        results = dict(self.stream(job, items))
        return [results[item] for item in items]


def _last_line(message: str) -> str:
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


# --- audits ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VictimSpec:
    """How an actor opens its own victim (``auditor.victims.open_victim``), behind the front end ``defence``
    (``auditor.defence.defend``) when it is set."""

    location: str
    token: str | None = None
    batch_size: int = 32
    threads: int = 1
    inputs_per_request: int = 8
    tokenizer: str | None = None
    defence: str | None = None

    def open(self):  # noqa: ANN201 (a Victim)
        from auditor.victims import open_victim

        return open_victim(
            self.location,
            token=self.token,
            batch_size=self.batch_size,
            threads=self.threads,
            inputs_per_request=self.inputs_per_request,
            tokenizer=self.tokenizer,
        )


@dataclass(frozen=True)
class AuditJob:
    """Items are (attack name, example index); results are ``AttackOutcome`` JSON."""

    victim: VictimSpec
    dataset: Any  # auditor.data.Dataset: the vocabulary of the random baseline
    triggers: Any  # auditor.schemas.TriggerSet
    settings: Any  # auditor.schemas.AuditSettings
    lexicon: Any  # auditor.schemas.LabelLexicon: the validity constraint of every attack
    examples: list[Any]  # auditor.data.Example, indexed by the items

    def build(self) -> Callable[[tuple[str, int]], dict]:
        from auditor.audit import attack_example, audit_attacks
        from auditor.defence import defend

        victim = defend(self.victim.open(), self.victim.defence, self.lexicon)
        attacks = audit_attacks(victim, self.triggers, self.settings, self.lexicon, self.dataset)

        def run(item: tuple[str, int]) -> dict:
            name, index = item
            return attack_example(name, attacks[name], index, self.examples[index], self.settings.seed).model_dump(mode="json")

        return run


class RayAttackExecutor:
    """``auditor.audit.AttackExecutor`` on a ``RayPool``: the driver appends each outcome to the checkpoint
    as it arrives."""

    def __init__(self, pool: RayPool, victim: VictimSpec, dataset: Any, triggers: Any, settings: Any, lexicon: Any) -> None:
        self.pool = pool
        self.victim = victim
        self.dataset = dataset
        self.triggers = triggers
        self.settings = settings
        self.lexicon = lexicon
        self._job: AuditJob | None = None  # kept, so that its actors serve further calls on the same examples

    def attack(self, names: list[str], examples: Sequence[Any], checkpoint: Any, progress: Callable[[str, int, int], None] | None) -> None:
        from auditor.audit import attack_key

        todo = [(name, index) for name in names for index in range(len(examples)) if attack_key(name, index) not in checkpoint]
        done = Counter({name: len(examples) for name in names}) - Counter(name for name, _ in todo)
        if self._job is None or self._job.examples != list(examples):
            self._job = AuditJob(self.victim, self.dataset, self.triggers, self.settings, self.lexicon, list(examples))
        job = self._job
        for (name, index), outcome in self.pool.stream(job, todo):
            checkpoint.put(attack_key(name, index), outcome)
            done[name] += 1
            if progress:
                progress(name, done[name], len(examples))


# --- pattern mining and head importance ---------------------------------------------------------------------


def _load_classifier(location: str):  # noqa: ANN202 (a Classifier, in eval mode)
    from auditor.models import load_classifier

    classifier = load_classifier(location)
    classifier.model.eval()
    return classifier


@dataclass(frozen=True)
class MineJob:
    """Items are (batch index, batch of examples); results are ``PatternMiner`` output for that batch. The job
    holds no data, so its actors serve every later call with the same options."""

    model: str
    options: Any  # auditor.schemas.TriggerMiningOptions

    def build(self) -> Callable[[tuple[int, tuple]], list]:
        from auditor.triggers import PatternMiner

        miner = PatternMiner(_load_classifier(self.model), self.options)
        return lambda item: miner(list(item[1]))


class RayMiningExecutor:
    """``auditor.triggers.MiningExecutor`` on a ``RayPool``; each actor loads the model at ``model`` once and
    keeps it for every call with the same options."""

    def __init__(self, pool: RayPool, model: str) -> None:
        self.pool = pool
        self.model = model
        self._job: MineJob | None = None

    def mine(self, batches: dict[int, list[Any]], options: Any) -> Iterator[tuple[int, list[Any]]]:
        if self._job is None or self._job.options != options:
            self._job = MineJob(self.model, options)
        for (index, _), result in self.pool.stream(self._job, [(index, tuple(batch)) for index, batch in batches.items()]):
            yield index, result  # type: ignore[misc]


@dataclass(frozen=True)
class ImportanceJob:
    """Items are batch indices of ``encode_dataset(model, dataset, batch_size)``; results are the method's
    ``batch_sum`` of that batch."""

    model: str
    dataset: Any  # auditor.data.Dataset
    method: str
    steps: int
    seed: int
    batch_size: int

    def build(self) -> Callable[[int], Any]:
        from auditor.heads import encode_dataset, importance_method

        classifier = _load_classifier(self.model)
        batches = encode_dataset(classifier, self.dataset, self.batch_size)
        scorer = importance_method(self.method, self.steps, self.seed)  # type: ignore[arg-type]
        return lambda index: scorer.batch_sum(classifier.model, batches[index])


class RayImportanceExecutor:
    """``auditor.heads.ImportanceExecutor`` on a ``RayPool``; each actor loads the model at ``model``."""

    def __init__(self, pool: RayPool, model: str) -> None:
        self.pool = pool
        self.model = model

    def batch_sums(self, method: str, dataset: Any, steps: int, seed: int, batch_size: int) -> list[Any]:
        count = -(-len(dataset.examples) // batch_size)
        return self.pool.map(ImportanceJob(self.model, dataset, method, steps, seed, batch_size), range(count))
