"""Evaluation of function-calling models (BFCL single-turn categories via the bfcl-eval package)."""
