"""Greedy completions of a fresh vLLM engine loaded from a saved model folder (a helper process of test_vllm_hdr).

    python tests/vllm_greedy.py MODEL_DIR PROMPTS_JSON OUT_JSON --max-tokens N --max-model-len L

PROMPTS_JSON holds token-id prompts; OUT_JSON gets the completion token ids, one list per prompt. The engine is built
with the arguments TRL's colocated `VLLMGeneration` passes to `vllm.LLM` (dtype left to vLLM's `auto` rule, 4096
batched tokens, seed 0), so the only difference from the training run's engine is where its weights came from.
"""

from __future__ import annotations

import argparse
import json
import os


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("prompts")
    parser.add_argument("out")
    parser.add_argument("--max-tokens", type=int, required=True)
    parser.add_argument("--max-model-len", type=int, required=True)
    args = parser.parse_args()
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from vllm import LLM, SamplingParams

    llm = LLM(model=args.model_dir, max_model_len=args.max_model_len, max_num_batched_tokens=4096, seed=0,
              logprobs_mode="processed_logprobs")
    prompts = json.loads(open(args.prompts).read())
    outputs = llm.generate([{"prompt_token_ids": ids} for ids in prompts],
                           SamplingParams(temperature=0.0, max_tokens=args.max_tokens), use_tqdm=False)
    result = {"dtype": str(llm.llm_engine.model_config.dtype).removeprefix("torch."),
              "completions": [list(o.outputs[0].token_ids) for o in outputs]}
    with open(args.out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
