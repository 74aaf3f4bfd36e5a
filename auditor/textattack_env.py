"""Prepares the process for TextAttack, offline: import this module before the first ``import textattack``.

``import textattack`` builds a ``StopwordModification`` that reads NLTK's English stopwords; offline that
fails unless a ``corpora/stopwords/english`` file lies under a directory on ``NLTK_DATA``. The package ships
NLTK's 179-word list in ``auditor/resources/nltk_data`` and puts that directory (or a private copy, see
``nltk_data_directory``) on ``NLTK_DATA``, after any directories the user set. TextAttack's first import also tries ``nltk.download`` (it fails fast offline and
is not retried). Its logger is quietened to errors: it warns about every model wrapper it does not know.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

NLTK_RESOURCES = Path(__file__).resolve().parent / "resources" / "nltk_data"


STOPWORDS = Path("corpora") / "stopwords" / "english"


def _private(path: Path) -> bool:
    return not path.stat().st_mode & 0o022


def nltk_data_directory() -> Path:
    """The shipped ``nltk_data``, or a private copy of it when the checkout is group- or world-writable:
    NLTK refuses to read data that another account could have planted (e.g. a clone made with umask 002)."""
    chain = [NLTK_RESOURCES, *(NLTK_RESOURCES / part for part in (STOPWORDS.parent.parent, STOPWORDS.parent, STOPWORDS))]
    if all(_private(p) for p in chain):
        return NLTK_RESOURCES
    copy = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "auditor" / "nltk_data"
    (copy / STOPWORDS.parent).mkdir(mode=0o700, parents=True, exist_ok=True)
    for directory in (copy, copy / STOPWORDS.parent.parent, copy / STOPWORDS.parent):
        directory.chmod(0o700)
    target = copy / STOPWORDS
    target.write_bytes((NLTK_RESOURCES / STOPWORDS).read_bytes())
    target.chmod(0o600)
    return copy


def _add_nltk_resources() -> None:
    resources = str(nltk_data_directory())
    directories = [d for d in os.environ.get("NLTK_DATA", "").split(os.pathsep) if d]
    if resources not in directories:
        directories.append(resources)
    os.environ["NLTK_DATA"] = os.pathsep.join(directories)
    import nltk  # NLTK reads NLTK_DATA once, at its import: extend its path too in case it came first

    if resources not in nltk.data.path:
        nltk.data.path.append(resources)


_add_nltk_resources()
_tokenizers_parallelism = os.environ.get("TOKENIZERS_PARALLELISM")

import textattack  # noqa: E402  (must follow the NLTK_DATA set-up above)

if _tokenizers_parallelism is None:  # textattack forces it to "True"; keep the user's (unset) default
    os.environ.pop("TOKENIZERS_PARALLELISM", None)
else:
    os.environ["TOKENIZERS_PARALLELISM"] = _tokenizers_parallelism
logging.getLogger("textattack.shared.utils.install").setLevel(logging.ERROR)

__all__ = ["textattack"]
