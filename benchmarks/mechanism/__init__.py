"""The mechanism experiment (issue 31): what SSB does to the two losses it balances, and how far it moves the model
from its base on prompts outside the task, measured continuously on data no arm trained on.

    python -m benchmarks.mechanism --data ../shared/data/toolrl_xlam_cot.jsonl   (`make evidence`)
    python -m benchmarks.mechanism ... --report-only     # rebuild the report from the cached units

Arms (ablation v2's definitions, `benchmarks.ablation_v2.config`, trained by its `train_unit`): `sft` (TRL's plain
SFT loss), `ssb` (the paper: λ init 0.7, learnable on the main learning rate), `ssb_lr` (λ learning rate --lambda-lr,
so λ moves); --seeds each (default 3), plus the untrained `base` once. Every trained unit of a seed shares the start
weights, data order and optimizer steps.

Held-out split, fixed before any result: the records of --data that `balancetrl check` puts in its base set, each
held out when the first 8 hex digits of sha256(its id), as an integer, mod 100 are below --heldout-percent. The
others train (those over --max-length tokens are dropped, not truncated); held-out items are scored whatever their
length.

Per unit, no generation (so no sampling noise in the measures):
- held-out L_f and L_c per item: the item tokenized as training tokenizes it, the mean NLL of its call tokens and of
  its CoT tokens (`balancetrl.eval.heldout`, what `balancetrl eval --dataset` reports);
- forgetting on the first --forgetting-prompts questions of BFCL's `irrelevance` category, asked without tools: the
  tuned model's mean NLL of the base model's greedy answer and the token-level KL(base ‖ tuned) per prompt
  (`balancetrl.eval.forgetting`); the base answers are generated once, in the `base` unit, and every unit scores them.
Left out: the Answer Check of generated held-out answers (`balancetrl eval --dataset` has it): binary, near the floor
at 135M (ablation v2), and ~4 min of generation per unit.

Sizing (`make evidence`, ~3 h of 2 CPU cores): fp32, so units continue on any CPU (a bf16 unit needs
amx_bf16/avx512_bf16 and would be another experiment); an fp32 step of 4 long-CoT rows took ~53 s on a 2-core avx512
EPYC, so each unit trains --steps 16 (64 of the training rows, the sampler's random 64 per seed) at ablation v2's
lr 5e-5 instead of a whole epoch (38 steps). What the paper's account predicts, written before any unit ran, is
`report.PREDICTIONS`; the report prints it beside the result.

Every unit is cached in <units>/<unit>.json (`benchmarks.ablation_v2.unit_cache`, keyed by a hash of its config), so
a run stopped anywhere resumes at the first unit not cached (a unit killed part-way runs again: ~10 min). The report
(<out>/mechanism.md, .json, mechanism/differences.png) reads the cache: per arm the measures, every arm against sft
as a paired difference with a 95% bootstrap CI over items (an item's seeds resampled together), and each seed's own
difference (the seed-to-seed spread).

The parts: `runner` (the command line, the data and split, one unit), `report` (the statistics, Markdown and plot).
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
