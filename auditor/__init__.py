"""auditor: self-attention attribution, head pruning, serving and robustness audits for BERT-family classifiers."""

__version__ = "0.1.0"
