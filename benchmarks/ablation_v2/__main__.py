"""`python -m benchmarks.ablation_v2`: the runner's command line (benchmarks/ablation_v2/runner.py)."""

from benchmarks.ablation_v2.runner import main

if __name__ == "__main__":
    main()
