"""Evaluation of function-calling models: BFCL single-turn and multi-turn categories via the bfcl-eval package."""
