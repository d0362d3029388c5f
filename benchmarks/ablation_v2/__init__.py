"""BalanceSFT ablation in the paper's regime (long CoT, α ≈ 0.8): paired, multi-seed, resumable. Successor of
`benchmarks/ablation.py` (whose results, `results/ablation.md`, stay as they were).

    python -m benchmarks.ablation_v2 --data ../shared/data/toolrl_xlam_cot.jsonl [--seeds 0,1] [--epochs 2] ...
    python -m benchmarks.ablation_v2 ... --report-only     # rebuild the report from the cached units

Data: the rows of `--data` that `check_record` puts in the base set train every arm (rows longer than
--max-length tokens are dropped, not truncated: keep_start truncation would cut off the call). Hard set of the HDR
arms: the rows the Answer Check marks hard, plus, when fewer than --min-hard, hard records of the project's
generator (`generate_labeled`, reference-violating answers) whose CoT this runner lengthens with a schema walk
(`long_cot`) — the long-CoT setting; its α is measured with the SmolLM2 tokenizer and must reach --hard-alpha-min.

Arms (same GGUF start, optimizer steps, data order, seed and eval for every trained arm of a seed):
    base          SmolLM2-135M-Instruct untrained (one unit: greedy eval does not depend on the seed)
    sft           ssb=False: TRL's plain SFT loss (implicit CoT weight α of the training data)
    ssb           the paper: λ init 0.7, learnable, λ on the main learning rate
    ssb_lr        λ init 0.7, learnable, ssb_lambda_lr = --lambda-lr (large enough that λ moves)
    ssb_fixed_lo  λ fixed at α - --fixed-delta  } α: plain SFT's CoT weight measured on the training data
    ssb_fixed_hi  λ fixed at α + --fixed-delta  }   (supervised tokens in CoT spans / all supervised tokens)
    sft_hdr       ssb=False + HDRCallback (rule gate only: judges=[])
    ssb_hdr       the paper's SSB + HDRCallback (rule gate only)

Eval: BFCL simple_python + multiple (all 600 unless --limit), greedy, --prompt-style fc (the trained format), via
`evaluate_bfcl`; `multi_turn_base` on its first --multi-turn-limit items, read from the runner's per-entry verdicts
(skipped with a note if the runner cannot score it); per arm also the share of outputs cut at --max-new-tokens.
Every (arm, seed) result is cached in <units>/<arm>-s<seed>.json (--units, default <work>/units; `make ablation`
keeps them in benchmarks/results/ablation_v2/units, committed, so sessions add to one experiment) with a hash of its
config (data fingerprint, step plan, λ settings, HDR settings, eval settings, --bf16), and reused only for the same
config; the hash does not cover the code, so after a change that alters results use a new --units folder. A unit
killed during eval resumes: after training it saves its weights and training record in <work>/<unit>/trained/, and
its eval journals each finished batch (`evaluate_bfcl(resume=True)`). Units run
seed-major (every arm on the first seed, then the next seed). The report
(<out>/ablation_v2.md/.json + plots) is built from the cache: pooled accuracy with 95% CIs, every trained arm vs SFT
as a paired comparison (item bootstrap, McNemar).

The parts:
    config        the arms, and each unit's config (what its hash covers)
    data          the checked base set, the long-CoT hard set, α of the training tokens
    units         one unit: train, save the weights, evaluate; resume after a kill
    evaluation    BFCL eval of a unit and the per-item verdicts read back
    unit_cache    the on-disk unit files, keyed by the config hash
    options       the options both unit runners share (this one and benchmarks/mechanism), the bf16 refusal
    runner        the command line: which units run, which are cached (`python -m benchmarks.ablation_v2`)
    stats         the report's numbers (pooled CIs, paired comparisons, time estimate) over `paired_stats`
    report        the report's Markdown, reading and plots
"""

import os

# before any part loads transformers (an import of one part runs this first)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
