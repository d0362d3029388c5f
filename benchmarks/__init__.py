"""Benchmarks and experiments (figures, not tests): each is a module run from the repository root as

    python -m benchmarks.NAME [options]        # e.g. python -m benchmarks.ablation_v2 --report-only ...

`-m` puts the repository root on the import path, so the modules import each other as `benchmarks.*` and the tests'
shared fixtures as `tests.fixtures.*` (a plain `python benchmarks/NAME.py` does neither). `common` holds what several
of them use; `ablation_v2/` is the paper-regime experiment, one module per concern. Results: `benchmarks/results/`.
"""
