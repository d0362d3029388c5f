"""The training and hard data of every arm: the checked base set of `--data` (rows over --max-length dropped), α of
the tokens plain SFT supervises, and the HDR hard set topped up with long-CoT synthetic rows (`long_cot`)."""

from __future__ import annotations

import hashlib
import json
import statistics
from pathlib import Path


def sha(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def check_file(path: str) -> dict:
    """Split `path` with the project's checks (`balancetrl check` defaults): base / hard / rejected with reasons."""
    from balancetrl.data.checks import check_record
    from balancetrl.data.formats import load_records

    split = {"base": [], "hard": [], "rejected": {}}
    for row in load_records(path):
        if row.error:
            split["rejected"][row.error] = split["rejected"].get(row.error, 0) + 1
            continue
        out = check_record(row.data)
        if out.outcome == "rejected":
            split["rejected"][out.reason] = split["rejected"].get(out.reason, 0) + 1
        else:
            split[out.outcome].append(out.record)
    return split


def long_cot(record: dict) -> dict:
    """The record with its first assistant CoT extended by a walk over every offered tool schema and every argument.

    This is the long-CoT setting of the generator's records (their own CoT is 2-6 sentences, α ≈ 0.57): the
    appended text restates what the schemas say, as R1-style reasoning does, and does not change any call.
    """
    import copy

    rec = copy.deepcopy(record)
    turn = next(m for m in rec["messages"] if m["role"] == "assistant")
    query = next(m["content"] for m in rec["messages"] if m["role"] == "user")
    walk = [(f"Let me read the request again carefully: \"{query}\". I will go through the available tools one "
            "by one before deciding.")]
    schemas = {}
    for tool in rec["tools"]:
        fn = tool.get("function", tool)
        props = (fn.get("parameters") or {}).get("properties") or {}
        required = set((fn.get("parameters") or {}).get("required") or [])
        schemas[fn["name"]] = props
        params = "; ".join(
            f"{p} ({spec.get('type', 'any')}, {'required' if p in required else 'optional'}): "
            f"{(spec.get('description') or 'no description').rstrip('.')}" for p, spec in props.items())
        walk.append(f"Let me look at {fn['name']}. Its description says: {(fn.get('description') or '').rstrip('.')}. "
                    f"It takes {params or 'no parameters'}.")
    for call in turn.get("tool_calls") or []:
        fn = call.get("function", call)
        for p, v in (fn.get("arguments") or {}).items():
            spec = schemas.get(fn["name"], {}).get(p, {})
            walk.append(f"For {fn['name']}, the parameter {p} is described as "
                        f"\"{(spec.get('description') or 'no description').rstrip('.')}\" and should be of type "
                        f"{spec.get('type', 'any')}. From the request, its value is {json.dumps(v)}. I check that "
                        "this value has the type the schema asks for and that it is exactly what the user said, "
                        "without inventing anything.")
    walk.append("Having gone through every tool and every argument, and having checked that no required "
                "parameter is missing, I am confident in the call below.")
    turn["reasoning_content"] = (turn.get("reasoning_content") or "") + "\n\n" + " ".join(walk)
    return rec


def supervised_alpha(records: list[dict], tokenizer, max_length: int) -> tuple[list[dict], list[dict], dict]:
    """Tokenize records as the trainer does; drop those over `max_length`; α of what plain SFT would weight."""
    from balancetrl.data.training import to_training_row
    from balancetrl.segments import SegmentSpec, tokenize_with_segments

    kept, dropped, n_cot, n_sup, lengths = [], [], 0, 0, []
    spec = SegmentSpec("<think>", "</think>")
    for rec in records:
        tok = tokenize_with_segments(to_training_row(rec), tokenizer, tokenizer.chat_template, spec)
        if len(tok["input_ids"]) > max_length:
            dropped.append({"id": rec.get("id"), "tokens": len(tok["input_ids"])})
            continue
        kept.append(rec)
        lengths.append(len(tok["input_ids"]))
        n_cot += sum(tok["cot_mask"])
        n_sup += sum(label != -100 for label in tok["labels"])
    info = {"alpha_supervised": n_cot / n_sup if n_sup else float("nan"), "cot_tokens": n_cot,
            "call_tokens": n_sup - n_cot, "tokens_mean": statistics.mean(lengths) if lengths else None,
            "tokens_max": max(lengths) if lengths else None}
    return kept, dropped, info


def build_data(opts, tokenizer) -> dict:
    from balancetrl.data.checks import check_record
    from balancetrl.data.token_stats import token_stats
    from tests.fixtures.synthetic import generate_labeled

    split = check_file(opts.data)
    base, dropped, sup = supervised_alpha(split["base"], tokenizer, opts.max_length)
    if not base:
        raise SystemExit(f"no base row of {opts.data} fits --max-length {opts.max_length}")
    text = token_stats(base, tokenizer)
    hard = list(split["hard"])
    info = {
        "path": str(opts.data), "sha256": hashlib.sha256(Path(opts.data).read_bytes()).hexdigest()[:16],
        "checked": {"base": len(split["base"]), "hard": len(split["hard"]),
                    "rejected": sum(split["rejected"].values())},
        "rejected_reasons": split["rejected"], "base_over_max_length": dropped, "base_used": len(base),
        "alpha_text": text.alpha, "cot_mean": statistics.mean(text.cot) if text.cot else None,
        "call_mean": statistics.mean(text.call) if text.call else None, **sup,
        "hard_real": len(hard),
    }
    synthetic = []
    if len(hard) < opts.min_hard:
        need = opts.min_hard - len(hard)
        records, _ = generate_labeled(4 * need, opts.hard_seed, hard_fraction=0.5, reject_fraction=0.0,
                                      id_prefix="longcot")
        for rec in records:
            out = check_record(rec)
            if out.outcome == "hard" and len(synthetic) < need:
                synthetic.append(long_cot(out.record))
        stats = token_stats(synthetic, tokenizer)
        info["hard_synthetic"] = {
            "name": f"generate_labeled(n={4 * need}, seed={opts.hard_seed}, hard_fraction=0.5) hard records "
                    f"+ long_cot(), first {need} that check hard",
            "n": len(synthetic), "alpha": stats.alpha, "cot_mean": statistics.mean(stats.cot),
            "call_mean": statistics.mean(stats.call)}
        if stats.alpha < opts.hard_alpha_min:
            raise SystemExit(f"the long-CoT synthetic hard set has α = {stats.alpha:.3f} < --hard-alpha-min "
                             f"{opts.hard_alpha_min}: lengthen long_cot() or lower --hard-alpha-min (and say so)")
    hard = (hard + synthetic)[: opts.min_hard] if opts.min_hard else hard
    info["hard_used"] = len(hard)
    info["fingerprint"] = sha({"base": base, "hard": hard})
    return {"base": base, "hard": hard, "info": info}
