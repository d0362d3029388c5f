"""Greedy batched generation for evaluation: transformers `generate` (CPU/GPU) or vLLM (GPU).

Both take already rendered prompt strings, so the chat template is applied once, in one place,
and both backends see byte-identical prompts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..hdr.generation import stop_token_ids


@dataclass
class Generation:
    text: str
    input_tokens: int
    output_tokens: int
    latency: float  # seconds, the sample's share of its batch's wall time


def generate_transformers(
    model, tokenizer, prompts: list[str], *, batch_size: int = 8, max_new_tokens: int = 512,
    progress: bool = True, desc: str = "generating",
) -> list[Generation]:
    """Greedy decoding with left padding; prompts are batched by length to waste little padding."""
    import torch
    from tqdm.auto import tqdm

    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.eos_token_id
    stop_ids = stop_token_ids(tokenizer, model)
    # The chat template already wrote any BOS; adding special tokens again would double it.
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    out: list[Generation | None] = [None] * len(prompts)
    device = next(model.parameters()).device
    model.eval()
    bar = tqdm(total=len(prompts), desc=desc, disable=not progress, unit="sample")
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        width = max(len(encoded[i]) for i in idx)
        ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            seq = encoded[i]
            ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
            mask[row, width - len(seq) :] = 1
        t0 = time.perf_counter()
        with torch.inference_mode():
            gen = model.generate(
                input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                max_new_tokens=max_new_tokens, eos_token_id=stop_ids, pad_token_id=pad_id,
                temperature=None, top_p=None, top_k=None,
            )
        dt = (time.perf_counter() - t0) / len(idx)
        for row, i in enumerate(idx):
            new = gen[row, width:].tolist()
            n_out = len(new)
            for k, tok in enumerate(new):
                if tok in stop_ids:
                    n_out = k + 1
                    break
            text = tokenizer.decode(new[:n_out], skip_special_tokens=True)
            out[i] = Generation(text, len(encoded[i]), n_out, dt)
        bar.update(len(idx))
    bar.close()
    return out  # type: ignore[return-value]


def generate_vllm(
    model_path: str, prompts: list[str], *, max_new_tokens: int = 512, tokenizer_path: str | None = None,
    **llm_kwargs,
) -> list[Generation]:
    """Greedy decoding with vLLM (imported lazily: it is an optional, CUDA-only extra)."""
    try:
        from vllm import LLM, SamplingParams
    except ImportError as e:
        raise ImportError(
            "The vllm backend needs vLLM (CUDA only): pip install 'balancetrl[vllm]'. "
            "On CPU use --backend transformers."
        ) from e
    llm = LLM(model=model_path, tokenizer=tokenizer_path or model_path, **llm_kwargs)
    params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens)
    t0 = time.perf_counter()
    # Token ids, not text: vLLM would add special tokens again on top of the chat template's BOS.
    tok = llm.get_tokenizer()
    token_prompts = [{"prompt_token_ids": tok(p, add_special_tokens=False)["input_ids"]} for p in prompts]
    results = llm.generate(token_prompts, params)
    dt = (time.perf_counter() - t0) / max(len(prompts), 1)
    return [
        Generation(r.outputs[0].text, len(r.prompt_token_ids), len(r.outputs[0].token_ids), dt) for r in results
    ]
