"""Prepares the process for TextAttack, offline: import this module before the first ``import textattack``.

``import textattack`` builds a ``StopwordModification`` that reads NLTK's English stopwords; offline that
fails unless a ``corpora/stopwords/english`` file lies under a directory on ``NLTK_DATA``. The package ships
NLTK's 179-word list in ``auditor/resources/nltk_data`` and puts that directory on ``NLTK_DATA`` (after any
directories the user set). TextAttack's first import also tries ``nltk.download`` (it fails fast offline and
is not retried). Its logger is quietened to errors: it warns about every model wrapper it does not know.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

NLTK_RESOURCES = Path(__file__).resolve().parent / "resources" / "nltk_data"


def _add_nltk_resources() -> None:
    directories = [d for d in os.environ.get("NLTK_DATA", "").split(os.pathsep) if d]
    if str(NLTK_RESOURCES) not in directories:
        directories.append(str(NLTK_RESOURCES))
    os.environ["NLTK_DATA"] = os.pathsep.join(directories)
    import nltk  # NLTK reads NLTK_DATA once, at its import: extend its path too in case it came first

    if str(NLTK_RESOURCES) not in nltk.data.path:
        nltk.data.path.append(str(NLTK_RESOURCES))


_add_nltk_resources()
_tokenizers_parallelism = os.environ.get("TOKENIZERS_PARALLELISM")

import textattack  # noqa: E402  (must follow the NLTK_DATA set-up above)

if _tokenizers_parallelism is None:  # textattack forces it to "True"; keep the user's (unset) default
    os.environ.pop("TOKENIZERS_PARALLELISM", None)
else:
    os.environ["TOKENIZERS_PARALLELISM"] = _tokenizers_parallelism
logging.getLogger("textattack.shared.utils.install").setLevel(logging.ERROR)

__all__ = ["textattack"]
