"""Which model answered: the identity headers of every ``/predictions`` and ``/explanations`` answer
(``IDENTITY_HEADERS``: TorchServe's model name and archive version, and the weights digest of
``auditor.models``), so that two releases served under one name and port can be told apart by a client, an
endpoint audit (``auditor.victims``) and ``auditor diff``."""

from __future__ import annotations

from collections.abc import Mapping

from auditor.schemas import ModelIdentity, ServedModelRef
from auditor.schemas.live import IDENTITY_HEADERS


def served_model(context, identity: ModelIdentity) -> ServedModelRef:
    """The model a TorchServe worker serves: the name it is served under, the archive's version (its manifest)
    and the weights digest of the loaded classifier."""
    version = str(((context.manifest or {}).get("model") or {}).get("modelVersion") or "")
    return ServedModelRef(name=context.model_name, version=version, weights_sha256=identity.weights_sha256)


def identity_headers(model: ServedModelRef) -> dict[str, str]:
    """``IDENTITY_HEADERS`` with their values for ``model``."""
    return dict(zip(IDENTITY_HEADERS, (model.name, model.version, model.weights_sha256)))


def model_from_headers(headers: Mapping[str, str]) -> ServedModelRef | None:
    """The model named by an answer's identity headers (case-insensitive ``headers``, as ``requests`` gives them);
    None when the server sent no weights digest (not an auditor archive)."""
    name, version, digest = (headers.get(header) for header in IDENTITY_HEADERS)
    if not digest:
        return None
    return ServedModelRef(name=name or "", version=version or "", weights_sha256=digest)
