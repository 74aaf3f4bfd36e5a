"""Everyday perturbations as invariance checks (typos, case, punctuation, contractions, names, places): the
perturbations (``perturbations``, ``contractions``, ``entities``) and running them on an audit's examples
(``checks``)."""
