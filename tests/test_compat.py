"""The private transformers/TRL surface (balancetrl/runtime/compat.py): a changed signature fails, naming the method."""

from __future__ import annotations

from configparser import ConfigParser
from pathlib import Path

import pytest
import transformers
import trl
from packaging.requirements import Requirement

from balancetrl import BalanceSFTConfig, BalanceSFTTrainer
from balancetrl.hdr.epochs import HDRTrainerMixin
from balancetrl.runtime.compat import PRIVATE_API, TESTED_VERSIONS, IncompatibleVersionError, check_private_api


def test_installed_versions_pass():
    check_private_api()  # raises on the first mismatch


@pytest.mark.parametrize("method", PRIVATE_API, ids=lambda m: m.name)
def test_a_changed_signature_is_refused_naming_the_method(monkeypatch, method):
    original = getattr(trl.SFTTrainer, method.name)
    owner = next(cls for cls in trl.SFTTrainer.__mro__ if method.name in vars(cls))

    def changed(self, *args, new_parameter=None, **kwargs):  # what a release adding a parameter looks like
        return original(self, *args, **kwargs)

    changed.__qualname__ = original.__qualname__
    changed.__module__ = original.__module__
    monkeypatch.setattr(owner, method.name, changed)
    with pytest.raises(IncompatibleVersionError) as info:
        check_private_api()
    message = str(info.value)
    assert f"{original.__module__}.{original.__qualname__} now takes (args, new_parameter, kwargs)" in message
    assert f"tested with ({', '.join(method.params)})" in message
    assert "transformers 5.23.0, trl 1.16.0, accelerate 1.15.0" in message and "constraints.txt" in message


def test_a_removed_method_is_refused(monkeypatch):
    monkeypatch.delattr(transformers.Trainer, "_run_epoch")
    with pytest.raises(IncompatibleVersionError, match=r"^_run_epoch no longer exists; hdr/epochs.py overrides it"):
        check_private_api()


def test_the_trainer_checks_before_it_builds_anything(monkeypatch, tmp_path):
    def renamed(self, model, trial_or_params):
        raise AssertionError("never reached")

    renamed.__qualname__, renamed.__module__ = "Trainer._get_output_dir", "transformers.trainer"
    monkeypatch.setattr(transformers.Trainer, "_get_output_dir", renamed)
    with pytest.raises(IncompatibleVersionError, match=r"transformers\.trainer\.Trainer\._get_output_dir now takes "
                                                       r"\(model, trial_or_params\), tested with \(trial\)"):
        BalanceSFTTrainer(model=None, args=BalanceSFTConfig(output_dir=str(tmp_path), use_cpu=True, report_to=[]))


def test_every_private_override_is_listed():
    """A new override of a private Trainer/TRL method must join PRIVATE_API, or upgrades could break it silently."""
    overridden = {name for cls in (BalanceSFTTrainer, HDRTrainerMixin) for name, value in vars(cls).items()
                  if callable(value) and (name.startswith("_") or name == "set_initial_training_values")
                  and not name.startswith("__") and hasattr(trl.SFTTrainer, name)}
    listed = {m.name for m in PRIVATE_API}
    assert overridden <= listed, sorted(overridden - listed)
    assert {"set_initial_training_values", "get_batch_samples"} <= listed


def test_tested_versions_match_the_bounds_and_the_constraints():
    root = Path(__file__).resolve().parents[1]
    pins = dict(line.split("==") for line in (root / "constraints.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    setup = ConfigParser()
    setup.read(root / "setup.cfg")
    lines = setup["options"]["install_requires"].splitlines()
    requires = {r.name: r.specifier for r in (Requirement(line) for line in lines if line.strip())}
    for package, version in TESTED_VERSIONS.items():
        assert pins[package] == version, package
        major, minor, _ = version.split(".")
        assert version in requires[package] and f"{major}.{int(minor) + 1}.0" not in requires[package], package
