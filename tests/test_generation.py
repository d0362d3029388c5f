"""Regeneration backends: rendering, determinism, sharding, and the vLLM adapter against a stand-in engine."""

import importlib.resources
import random
from typing import ClassVar

import pytest
import torch

from balancetrl import generation
from balancetrl.generation import (
    CompletionBackend,
    GenerationBackend,
    TransformersGeneration,
    VLLMBackend,
    VLLMSettings,
    decode_completion,
    padded_shard,
    render_prompts,
    shard_bounds,
    vllm_call_plan,
)
from balancetrl.generation import vllm_backend as gen

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather of a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


def _corpus():
    rng = random.Random(0)
    words = [
        "weather",
        "city",
        "paris",
        "london",
        "call",
        "tool",
        "think",
        "the",
        "a",
        "of",
        "to",
        "what",
        "is",
        "function",
        "arguments",
        "name",
        "json",
    ]
    lines = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 12))) for _ in range(300)]
    return lines + [
        '{"name": "get_weather", "arguments": {"city": "Paris"}}',
        "<think>",
        "</think>",
        "<tool_call>",
    ]


@pytest.fixture(scope="module")
def tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    raw.train_from_iterator(_corpus(), trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
    )
    tok.chat_template = (importlib.resources.files("trl") / "chat_templates" / "qwen3.jinja").read_text()
    return tok


def _model(tokenizer, seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        num_hidden_layers=2,
        hidden_size=64,
        intermediate_size=128,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=len(tokenizer),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config)


@pytest.fixture(scope="module")
def model(tokenizer):
    model = _model(tokenizer)
    model.name_or_path = "balancetrl-tests/tiny-llama"  # what TRL's colocated engine loads: a Hub id here
    return model


def _prompts(k):
    prompts = [[{"role": "user", "content": f"what is the weather in city {i}" + " paris" * i}] for i in range(k)]
    tools = [TOOLS if i % 2 == 0 else None for i in range(k)]
    return prompts, tools


# ---------------------------------------------------------------------------------------------------------------------
# rendering and decoding


def test_render_prompts_matches_chat_template_with_tools(tokenizer):
    prompts, tools = _prompts(2)
    ids = render_prompts(tokenizer, prompts, tools)
    text0 = tokenizer.decode(ids[0])
    assert text0.endswith("<|im_start|>assistant\n")
    assert "get_weather" in text0 and "<tools>" in text0
    assert "get_weather" not in tokenizer.decode(ids[1])  # no tools for this sample
    expected = tokenizer.apply_chat_template(prompts[0], tools=TOOLS, add_generation_prompt=True, tokenize=False)
    assert text0 == expected


def test_render_prompts_uses_given_template_and_kwargs(tokenizer):
    prompts, tools = _prompts(1)
    template = "{% for m in messages %}[{{ m.content }}]{% endfor %}{% if flag %}FLAG{% endif %}<|im_start|>"
    ids = render_prompts(
        tokenizer,
        prompts,
        tools,
        chat_template=template,
        chat_template_kwargs={"flag": True},
    )
    assert tokenizer.decode(ids[0]) == f"[{prompts[0][0]['content']}]FLAG<|im_start|>"


def test_render_prompts_rejects_mismatched_tools(tokenizer):
    prompts, _ = _prompts(2)
    with pytest.raises(ValueError):
        render_prompts(tokenizer, prompts, [None])


def test_decode_cuts_at_first_stop_and_keeps_special_tokens(tokenizer):
    body = tokenizer("<think>call</think>", add_special_tokens=False)["input_ids"]
    start = tokenizer.convert_tokens_to_ids("<|im_start|>")
    end, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    ids = [start] + body + [end, pad, pad] + body
    assert decode_completion(tokenizer, ids, [end]) == "<|im_start|><think>call</think>"
    assert decode_completion(tokenizer, body, [end]) == "<think>call</think>"  # no stop: the whole text


def test_stop_token_ids_merges_tokenizer_and_generation_config(tokenizer, model):
    from transformers import GenerationConfig

    class M:
        generation_config = GenerationConfig(eos_token_id=[tokenizer.pad_token_id, tokenizer.eos_token_id])

    vocab = tokenizer.get_vocab()
    end_of_turn = [vocab[t] for t in generation.END_OF_TURN_TOKENS if t in vocab]
    assert end_of_turn  # the test tokenizer has <|im_end|> / <|endoftext|>
    expected = [tokenizer.eos_token_id, tokenizer.pad_token_id]
    expected += [i for i in end_of_turn if i not in expected]
    assert generation.stop_token_ids(tokenizer, M()) == expected
    alone = [tokenizer.eos_token_id] + [i for i in end_of_turn if i != tokenizer.eos_token_id]
    assert generation.stop_token_ids(tokenizer) == alone


@pytest.mark.parametrize("n,world", [(0, 2), (1, 2), (5, 2), (6, 3), (7, 4), (3, 8)])
def test_shard_bounds_cover_input_in_order(n, world):
    bounds = [shard_bounds(n, world, r) for r in range(world)]
    flat = [i for start, stop in bounds for i in range(start, stop)]
    assert flat == list(range(n))
    assert max(stop - start for start, stop in bounds) == -(-n // world)


@pytest.mark.parametrize("n,world", [(3, 2), (1, 2), (5, 4), (0, 2), (8, 2)])
def test_padded_shards_have_equal_length_and_real_rows_cover_input_in_order(n, world):
    # every rank runs as many generate calls as every other (transformers syncs ranks per token under ZeRO-3/FSDP2)
    shards = [padded_shard(n, world, r) for r in range(world)]
    assert len({len(indices) for indices, _ in shards}) == 1 and len(shards[0][0]) == -(-n // world)
    assert [i for indices, real in shards for i in indices[:real]] == list(range(n))
    assert all(0 <= i < max(n, 1) for indices, _ in shards for i in indices)



# ---------------------------------------------------------------------------------------------------------------------
# transformers backend


def test_transformers_backend_shape_and_protocol(tokenizer, model):
    backend = TransformersGeneration(model, tokenizer, batch_size=2)
    assert isinstance(backend, GenerationBackend) and isinstance(backend, CompletionBackend)  # HDR's and eval's
    prompts, tools = _prompts(3)
    out = backend.generate(prompts, tools, num_generations=3, temperature=0.7, max_new_tokens=6, seed=1)
    assert len(out) == 3 and all(len(row) == 3 for row in out)
    assert all(isinstance(text, str) for row in out for text in row)
    assert backend.generate([], [], num_generations=3, temperature=0.7, max_new_tokens=6, seed=1) == []


def test_transformers_backend_same_seed_same_texts_and_training_rng_untouched(tokenizer, model):
    backend = TransformersGeneration(model, tokenizer, batch_size=2)
    prompts, tools = _prompts(3)
    kwargs = {"num_generations": 3, "temperature": 1.0, "max_new_tokens": 6}

    torch.manual_seed(123)
    first = backend.generate(prompts, tools, seed=7, **kwargs)
    after_generation = torch.rand(3)
    torch.manual_seed(123)
    without_generation = torch.rand(3)
    torch.manual_seed(456)  # a resumed run reaches the round with another global RNG state
    again = backend.generate(prompts, tools, seed=7, **kwargs)

    assert first == again  # HDR resume regenerates a round and must get the same candidates
    assert torch.equal(after_generation, without_generation)  # the training RNG stream does not see generation
    # A random tiny model at temperature 1 over ~400 tokens: samples differ across seeds and within a prompt.
    other = backend.generate(prompts, tools, seed=8, **kwargs)
    assert other != first
    assert any(len(set(row)) > 1 for row in first)


def test_transformers_backend_batching_and_padding_do_not_change_greedy_output(tokenizer, model):
    prompts, tools = _prompts(4)  # prompts of different lengths: batched rows get left padding
    kwargs = {
        "num_generations": 2,
        "temperature": 0.0,
        "max_new_tokens": 8,
        "seed": None,
    }
    batched = TransformersGeneration(model, tokenizer, batch_size=4).generate(prompts, tools, **kwargs)
    single = TransformersGeneration(model, tokenizer, batch_size=1).generate(prompts, tools, **kwargs)
    assert batched == single
    assert all(row[0] == row[1] for row in batched)  # greedy: one text, repeated

    # And greedy text equals a manual greedy decode of the rendered prompt: the backend really continues the prompt.
    ids = torch.tensor([render_prompts(tokenizer, prompts[:1], tools[:1])[0]])
    with torch.no_grad():
        for _ in range(8):
            next_id = model(ids).logits[0, -1].argmax()
            if next_id.item() == tokenizer.eos_token_id:
                break
            ids = torch.cat([ids, next_id.view(1, 1)], dim=1)
    n_prompt = len(render_prompts(tokenizer, prompts[:1], tools[:1])[0])
    assert batched[0][0] == tokenizer.decode(ids[0, n_prompt:].tolist())


def test_transformers_backend_restores_train_mode(tokenizer):
    model = _model(tokenizer)
    model.train()
    backend = TransformersGeneration(model, tokenizer)
    prompts, tools = _prompts(1)
    backend.generate(prompts, tools, num_generations=1, temperature=0.7, max_new_tokens=3, seed=0)
    assert model.training
    model.eval()
    backend.generate(prompts, tools, num_generations=1, temperature=0.7, max_new_tokens=3, seed=0)
    assert not model.training


def test_transformers_backend_with_accelerator_and_peft(tokenizer):
    from accelerate import Accelerator
    from peft import LoraConfig, get_peft_model

    base = _model(tokenizer)
    reference = TransformersGeneration(base, tokenizer).generate(
        *_prompts(2), num_generations=1, temperature=0.0, max_new_tokens=6, seed=None
    )
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], lora_dropout=0.0))
    accelerator = Accelerator(cpu=True)
    wrapped = accelerator.prepare(peft_model)
    wrapped.train()
    backend = TransformersGeneration(wrapped, tokenizer, accelerator=accelerator, batch_size=2)
    out = backend.generate(*_prompts(2), num_generations=1, temperature=0.0, max_new_tokens=6, seed=None)
    assert out == reference  # fresh LoRA (B = 0) is a no-op: same greedy text as the base model

    # A non-zero adapter changes the weights generate sees.
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 1.0)
    changed = backend.generate(*_prompts(2), num_generations=1, temperature=0.0, max_new_tokens=6, seed=None)
    assert changed != reference
    assert peft_model.training


def test_transformers_backend_validates_request(tokenizer, model):
    backend = TransformersGeneration(model, tokenizer)
    prompts, tools = _prompts(2)
    for bad in ({"num_generations": 0}, {"temperature": -1.0}, {"max_new_tokens": 0}):
        kwargs = {
            "num_generations": 1,
            "temperature": 0.7,
            "max_new_tokens": 4,
            "seed": 0,
        } | bad
        with pytest.raises(ValueError):
            backend.generate(prompts, tools, **kwargs)
    with pytest.raises(ValueError):
        backend.generate(
            prompts,
            tools[:1],
            num_generations=1,
            temperature=0.7,
            max_new_tokens=4,
            seed=0,
        )


# ---------------------------------------------------------------------------------------------------------------------
# vLLM backend: configuration, and the adapter against a stand-in for TRL's VLLMGeneration


def test_vllm_settings_validation():
    VLLMSettings()
    VLLMSettings(mode="server", server_port=8001)
    VLLMSettings(
        mode="colocate",
        enable_sleep_mode=True,
        tensor_parallel_size=2,
        max_model_length=4096,
    )
    for bad in (
        {"mode": "remote"},
        {"server_port": 0},
        {"group_port": 70000},
        {"gpu_memory_utilization": 0.0},
        {"gpu_memory_utilization": 1.5},
        {"tensor_parallel_size": 0},
        {"max_model_length": 0},
        {"server_timeout": 0},
        {"mode": "server", "enable_sleep_mode": True},
        {"mode": "server", "tensor_parallel_size": 2},
    ):
        with pytest.raises(ValueError):
            VLLMSettings(**bad)


def test_vllm_settings_from_trl_config():
    from trl import GRPOConfig

    args = GRPOConfig(
        output_dir="unused",
        vllm_mode="server",
        vllm_server_port=8123,
        vllm_gpu_memory_utilization=0.5,
        report_to="none",
        use_cpu=True,
    )
    settings = VLLMSettings.from_args(args)
    assert (settings.mode, settings.server_port, settings.gpu_memory_utilization) == (
        "server",
        8123,
        0.5,
    )
    assert VLLMSettings.from_args(args, server_port=9000).server_port == 9000


def test_vllm_missing_extra_gives_install_hint(monkeypatch, tokenizer, model):
    monkeypatch.setattr(gen, "_vllm_available", lambda: False)
    with pytest.raises(ImportError, match=r"balancetrl\[vllm\]"):
        VLLMBackend(model, tokenizer, object(), VLLMSettings(mode="server"))


def test_unknown_backend_name():
    from balancetrl.hdr.hdr_config import HDRConfig

    # where a run names its backend: HDR's regeneration (evaluation's --backend is a CLI choice)
    with pytest.raises(ValueError, match="'transformers' or 'vllm'"):
        HDRConfig(generation_backend="sglang")


def test_vllm_call_plan():
    assert vllm_call_plan("server", 3, 5) == [(3, 5)]
    assert vllm_call_plan("colocate", 3, None) == [(3, None)]
    assert vllm_call_plan("colocate", 3, 5) == [(1, 5), (1, 6), (1, 7)]
    assert vllm_call_plan("colocate", 1, 5) == [(1, 5)]


class FakeVLLMGeneration:
    """Mimics TRL's VLLMGeneration contract: prompts arrive repeated `num_generations` times; each request's
    sample is a function of (prompt, seed, child index) as in vLLM (a request of n children seeds them seed + i;
    colocate sends n=1 requests); unseeded requests draw from an engine-level RNG."""

    instances: ClassVar[list] = []

    def __init__(self, model, accelerator, processing_class, mode, **kwargs):
        self.mode, self.kwargs = mode, kwargs
        self.temperature = kwargs.get("temperature", 1.0)
        self.max_completion_length = 16
        self.generation_kwargs = kwargs["generation_kwargs"]
        self.eos = processing_class.eos_token_id
        self.calls, self.syncs = [], 0
        self.rng = random.Random(0)
        if hasattr(FakeVLLMGeneration, "on_init"):
            FakeVLLMGeneration.on_init(model)
        FakeVLLMGeneration.instances.append(self)

    def sync_weights(self):
        self.syncs += 1

    def _sample(self, prompt, seed):
        rng = random.Random(hash((tuple(prompt), seed))) if seed is not None else self.rng
        return [rng.randrange(10, 300) for _ in range(self.max_completion_length - 1)] + [self.eos]

    def generate(self, prompts, images, num_generations, profiler=None):
        self.calls.append(
            (
                len(prompts),
                num_generations,
                dict(self.generation_kwargs),
                self.temperature,
            )
        )
        seed = self.generation_kwargs.get("seed")
        if self.mode == "server":
            unique = prompts[::num_generations]
            completions = [
                self._sample(p, None if seed is None else seed + i) for p in unique for i in range(num_generations)
            ]
        else:
            completions = [self._sample(p, seed) for p in prompts]
        return prompts, completions, None, None


class OneProcess:
    num_processes, process_index, is_main_process = 1, 0, True

    def wait_for_everyone(self):
        pass


class FakePlatform:
    """vLLM's `current_platform` as the backend reads it: a CUDA build (sleep mode) or the CPU build (neither)."""

    def __init__(self, cpu: bool):
        self.cpu, self.device_type = cpu, "cpu" if cpu else "cuda"

    def is_cpu(self):
        return self.cpu

    def is_sleep_mode_available(self):
        return not self.cpu


@pytest.fixture
def fake_vllm(monkeypatch):
    import trl.generation.vllm_generation as trl_vllm

    FakeVLLMGeneration.instances.clear()
    monkeypatch.setattr(gen, "_vllm_available", lambda: True)
    monkeypatch.setattr(gen, "_vllm_platform", lambda: FakePlatform(cpu=False))
    monkeypatch.setattr(trl_vllm, "VLLMGeneration", FakeVLLMGeneration)
    return FakeVLLMGeneration.instances


def test_vllm_sleep_mode_follows_the_platform(fake_vllm, monkeypatch, tokenizer, model):
    # unset: on where vLLM supports it (CUDA), off on CPU; true on CPU is refused before any engine exists
    gen.VLLMBackend(model, tokenizer, OneProcess(), VLLMSettings())
    monkeypatch.setattr(gen, "_vllm_platform", lambda: FakePlatform(cpu=True))
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    gen.VLLMBackend(model, tokenizer, OneProcess(), VLLMSettings())
    assert [e.kwargs["enable_sleep_mode"] for e in fake_vllm] == [True, False]
    import os

    assert os.environ["VLLM_CPU_KVCACHE_SPACE"] == "4"  # not gpu_memory_utilization of all RAM
    with pytest.raises(ValueError, match="sleep mode is not supported on this platform"):
        gen.VLLMBackend(model, tokenizer, OneProcess(), VLLMSettings(enable_sleep_mode=True))
    with pytest.raises(ValueError, match="NCCL weight-transfer engine, which needs a CUDA device"):
        gen.VLLMBackend(model, tokenizer, OneProcess(), VLLMSettings(mode="server"))
    assert len(fake_vllm) == 2


def test_vllm_on_cpu_syncs_through_vllms_inplace_reload(fake_vllm, monkeypatch, tokenizer, model):
    """The CPU build repacks its linear weights, so TRL's `load_weights` push cannot write them; the backend feeds TRL's
    parameter walk to the worker's `reload_weights` instead, then drops the prefix cache (it holds old-weight KV)."""
    import types

    monkeypatch.setattr(gen, "_vllm_platform", lambda: FakePlatform(cpu=True))
    backend = gen.VLLMBackend(model, tokenizer, OneProcess(), VLLMSettings())
    (engine,) = fake_vllm
    reloads, resets = [], []
    worker = types.SimpleNamespace(reload_weights=lambda weights_iterator, is_checkpoint_format: reloads.append(
        (list(weights_iterator), is_checkpoint_format)))
    engine.llm = types.SimpleNamespace(llm_engine=types.SimpleNamespace(
        model_executor=types.SimpleNamespace(driver_worker=worker)), reset_prefix_cache=lambda: resets.append(1))
    engine._iter_named_params = lambda: iter(model.named_parameters())
    prompts, tools = _prompts(2)
    backend.generate(prompts, tools, num_generations=1, temperature=0.0, max_new_tokens=3, seed=None)
    assert engine.syncs == 0 and len(reloads) == 1 and len(resets) == 1
    names, checkpoint_format = [n for n, _ in reloads[0][0]], reloads[0][1]
    assert names == [n for n, _ in model.named_parameters()] and checkpoint_format


def test_vllm_on_cpu_samples_without_per_request_seeds_and_says_so(fake_vllm, monkeypatch, tokenizer, model, caplog):
    """vLLM's CPU build kills a seeded sampled request after a chunked prefill ("CPU Generator does not use offset",
    seen in benchmarks.hdr_round_vllm: 64 requests over TRL's 4096-token prefill budget): on CPU the round's requests
    go unseeded, with a warning; greedy requests and a CUDA build keep their seeds."""
    import logging
    import types

    assert [gen.request_seed(7, 0.7, on_cpu=True), gen.request_seed(7, 0.0, on_cpu=True),
            gen.request_seed(7, 0.7, on_cpu=False), gen.request_seed(None, 0.7, on_cpu=True)] == [None, 7, 7, None]
    monkeypatch.setattr(gen, "_vllm_platform", lambda: FakePlatform(cpu=True))
    backend = gen.VLLMBackend(model, tokenizer, OneProcess(), VLLMSettings())
    (engine,) = fake_vllm
    worker = types.SimpleNamespace(reload_weights=lambda weights_iterator, is_checkpoint_format: list(weights_iterator))
    engine.llm = types.SimpleNamespace(llm_engine=types.SimpleNamespace(
        model_executor=types.SimpleNamespace(driver_worker=worker)), reset_prefix_cache=lambda: None)
    engine._iter_named_params = lambda: iter(model.named_parameters())
    prompts, tools = _prompts(2)
    with caplog.at_level(logging.WARNING, logger=gen.__name__):
        out = backend.generate(prompts, tools, num_generations=3, temperature=0.7, max_new_tokens=3, seed=11)
    # one call of n=3 duplicates drawing from the engine's generator (not three seeded calls of n=1)
    assert [(c[0], c[1], "seed" in c[2]) for c in engine.calls] == [(6, 3, False)]
    assert len(out) == 2 and all(len(row) == 3 for row in out)
    assert "sampling without the per-request seed 11" in caplog.text


def test_vllm_starts_from_a_safetensors_copy_of_a_model_it_cannot_read(fake_vllm, tmp_path, tokenizer, model):
    """A model loaded from a GGUF file: vLLM is given a saved copy while the engine is built, and the model's own
    name_or_path comes back afterwards; a readable folder is handed over unchanged."""
    seen = []
    FakeVLLMGeneration.on_init = lambda m: seen.append(m.name_or_path)
    try:
        gguf = tmp_path / "model.Q4_1.gguf"
        gguf.write_bytes(b"GGUF")
        model.name_or_path = str(gguf)
        copy = tmp_path / "copy"
        gen.VLLMBackend(model, tokenizer, OneProcess(), VLLMSettings(), export_dir=str(copy))
        assert seen == [str(copy)] and model.name_or_path == str(gguf)
        assert (copy / "config.json").is_file() and (copy / "tokenizer_config.json").is_file()
        assert any(copy.glob("*.safetensors"))
        with pytest.raises(ValueError, match="no folder was given to save a copy"):
            gen.VLLMBackend(model, tokenizer, OneProcess(), VLLMSettings())
        model.name_or_path = str(copy)  # readable: no second copy
        gen.VLLMBackend(model, tokenizer, OneProcess(), VLLMSettings(), export_dir=str(tmp_path / "unused"))
        assert seen[-1] == str(copy) and not (tmp_path / "unused").exists()
    finally:
        del FakeVLLMGeneration.on_init


@pytest.mark.parametrize("mode", ["colocate", "server"])
def test_vllm_adapter_maps_the_interface(fake_vllm, tokenizer, model, mode):
    backend = VLLMBackend(model, tokenizer, OneProcess(), VLLMSettings(mode=mode), generation_kwargs={"x": 1})
    # regeneration only: evaluation's completions come from OfflineVLLM
    assert isinstance(backend, GenerationBackend) and not isinstance(backend, CompletionBackend)
    (engine,) = fake_vllm
    assert engine.kwargs["logprobs"] is None and engine.kwargs["top_k"] == 0
    prompts, tools = _prompts(3)
    out = backend.generate(prompts, tools, num_generations=3, temperature=0.7, max_new_tokens=5, seed=11)

    assert len(out) == 3 and all(len(row) == 3 for row in out)
    assert all(len(set(row)) == 3 for row in out)  # seeded colocate must not return one text three times
    assert engine.syncs == 1  # one weight push per round
    assert engine.temperature == 0.7 and engine.max_completion_length == 5
    assert all(call[2]["x"] == 1 for call in engine.calls)
    assert engine.generation_kwargs == {"x": 1}  # the round's seed does not leak into later calls
    # Both modes give child i of a prompt the seed 11 + i, so the same round yields the same texts in either mode.
    expected = [
        [decode_completion(tokenizer, engine._sample(ids, 11 + i), [tokenizer.eos_token_id]) for i in range(3)]
        for ids in render_prompts(tokenizer, prompts, tools)
    ]
    assert out == expected
    assert (
        backend.generate(
            prompts,
            tools,
            num_generations=3,
            temperature=0.7,
            max_new_tokens=5,
            seed=11,
        )
        == out
    )
    assert engine.syncs == 2


class Rank:
    def __init__(self, index, world):
        self.process_index, self.num_processes = index, world


def test_vllm_adapter_pads_shards_to_equal_size(fake_vllm, monkeypatch, tokenizer, model):
    # 5 prompts on 2 ranks: rank 1 holds 2 real prompts + 1 pad (`padded_shard`), so both ranks send 3 (TRL slices
    # by that size).
    gathered = {}

    def fake_gather(accelerator, local):
        gathered[accelerator.process_index] = local
        return local  # per-rank view; the ordering across ranks is checked by shard_bounds tests

    monkeypatch.setattr(gen, "_gather", fake_gather)
    prompts, tools = _prompts(5)
    for rank in (0, 1):
        backend = gen.VLLMBackend(model, tokenizer, Rank(rank, 2), VLLMSettings(mode="server"))
        backend.generate(prompts, tools, num_generations=2, temperature=0.7, max_new_tokens=4, seed=3)
    assert [calls[0][0] for calls in (e.calls for e in fake_vllm)] == [
        6,
        6,
    ]  # 3 prompts × 2 on each rank
    assert len(gathered[0]) == 3 and len(gathered[1]) == 2  # the pad is generated, then dropped before the gather


# ---------------------------------------------------------------------------------------------------------------------
# two processes (DDP on gloo): every rank gets the full list, in input order, equal to the single-process result


def _two_process_worker():
    import hashlib
    import json

    from accelerate import Accelerator

    tok = tokenizer.__wrapped__()
    accelerator = Accelerator(cpu=True)
    model = _model(tok)  # same init seed on every rank: same weights
    prompts, tools = _prompts(5)  # 5 over 2 ranks: uneven shards
    single = TransformersGeneration(model, tok, batch_size=2).generate(
        prompts, tools, num_generations=2, temperature=0.0, max_new_tokens=6, seed=None
    )
    backend = TransformersGeneration(accelerator.prepare(model), tok, accelerator=accelerator, batch_size=2)
    greedy = backend.generate(prompts, tools, num_generations=2, temperature=0.0, max_new_tokens=6, seed=None)
    sampled = [
        backend.generate(prompts, tools, num_generations=3, temperature=1.0, max_new_tokens=6, seed=4) for _ in range(2)
    ]
    print(
        "RESULT "
        + json.dumps(
            {
                "world": accelerator.num_processes,
                "greedy_matches_single_process": greedy == single,
                "same_seed_same_texts": sampled[0] == sampled[1],
                "digest": hashlib.md5(json.dumps(sampled[0]).encode()).hexdigest(),
            }
        ),
        flush=True,
    )


@pytest.mark.slow
def test_transformers_backend_two_processes(tmp_path):
    import json
    import os
    import subprocess
    import sys

    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        __file__,
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        cmd,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(line[7:]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(results) == 2
    for result in results:
        assert result["world"] == 2
        assert result["greedy_matches_single_process"] and result["same_seed_same_texts"]
    assert results[0]["digest"] == results[1]["digest"]  # both ranks hold the same gathered list


if __name__ == "__main__":  # entry point of the torchrun workers above
    _two_process_worker()


def test_hdr_config_maps_to_vllm_settings_in_both_modes():
    from balancetrl.hdr.hdr_config import HDRConfig

    server = gen.VLLMSettings.from_args(HDRConfig(vllm_mode="server", vllm_server_port=8123))
    assert (server.mode, server.server_port, server.enable_sleep_mode) == ("server", 8123, None)
    colocate = gen.VLLMSettings.from_args(HDRConfig(vllm_gpu_memory_utilization=0.25, vllm_max_model_length=4096))
    # unset sleep mode stays unset: the backend turns it on where the installed vLLM supports it
    assert (colocate.mode, colocate.enable_sleep_mode, colocate.gpu_memory_utilization) == ("colocate", None, 0.25)
    assert colocate.max_model_length == 4096
    with pytest.raises(ValueError, match="colocate"):
        gen.VLLMSettings.from_args(HDRConfig(vllm_mode="server", vllm_enable_sleep_mode=True))
