"""Comparing a primary model with a shadow model on live traffic: the shadow replay in the serving worker,
the comparisons database (``records``), and the report and promotion decision read from it."""
