"""bf16 autocast on a CPU that emulates bf16 is said before the first step (a step there was 9.1x an fp32 one)."""

import logging

from balancetrl import BalanceSFTConfig, BalanceSFTTrainer
from balancetrl.runtime.cpu import cpu_bf16_flags, warn_if_bf16_is_emulated
from conftest import as_dataset, build_tiny_model

# /proc/cpuinfo flag lines, cut down, of the two CPUs the project's measurements ran on and an Arm server
EPYC = "model name\t: AMD EPYC\nflags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma bmi2 sha_ni\n"
XEON = ("model name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu sse sse2 avx avx2 avx512f avx512_bf16 avx512_fp16 "
        "amx_bf16 amx_tile amx_int8\n")
ARM = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes sha2 crc32 atomics sve bf16 i8mm\nCPU implementer\t: 0x41\n"


def test_bf16_flags_are_read_per_cpu_and_unknown_off_x86():
    assert cpu_bf16_flags(EPYC) == []
    assert cpu_bf16_flags(XEON) == ["amx_bf16", "avx512_bf16"]
    assert cpu_bf16_flags(ARM) is None  # Arm lists "bf16": not the x86 flags, so not judged
    assert cpu_bf16_flags("") is None


def test_the_warning_names_the_fix_only_where_bf16_is_emulated(caplog):
    with caplog.at_level(logging.WARNING, logger="balancetrl.runtime.cpu"):
        message = warn_if_bf16_is_emulated(True, "cpu", EPYC)
    assert "amx_bf16" in message and "`bf16: false`" in message and "--bf16 false" in message
    assert [r.getMessage() for r in caplog.records] == [message]
    for bf16, device, cpuinfo in ((False, "cpu", EPYC), (True, "cuda", EPYC), (True, "cpu", XEON), (True, "cpu", ARM)):
        assert warn_if_bf16_is_emulated(bf16, device, cpuinfo) is None, (bf16, device)


def test_the_trainer_warns_at_construction_with_sftconfigs_default_bf16(tokenizer, conversations, tmp_path,
                                                                         monkeypatch, caplog):
    monkeypatch.setattr("balancetrl.runtime.cpu.cpu_bf16_flags", lambda cpuinfo=None: [])  # the same on any CI machine
    built = []
    for bf16 in (None, False):  # None: SFTConfig's default, which is True
        extra = {} if bf16 is None else {"bf16": bf16}
        args = BalanceSFTConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, save_strategy="no", **extra)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="balancetrl.runtime.cpu"):
            BalanceSFTTrainer(model=build_tiny_model(tokenizer), args=args, train_dataset=as_dataset(conversations),
                              processing_class=tokenizer)
        built.append((args.bf16, [r.name for r in caplog.records]))
    assert built == [(True, ["balancetrl.runtime.cpu"]), (False, [])]
