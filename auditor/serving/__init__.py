"""Serving auditor's classifiers with TorchServe: archives (``archive``), the worker's request logic
(``service``), explanation capacity (``capacity``), the server manager (``torchserve``) and the load clients
(``loadtest``). The handler itself stays thin, in ``handlers/classifier_handler.py``."""
