"""The shipped recipes. This folder is installed as the package `balancetrl.recipes` (setup.py maps it), so that
`balancetrl balance-sft --config smollm2-135m/balance_sft_cpu` finds a recipe by name from an installed wheel;
in the repository, `--config recipes/smollm2-135m/balance_sft_cpu.yaml` reads the file here."""
