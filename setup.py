"""setup.cfg holds the metadata, dependencies and package data; this file says the one thing setup.cfg cannot: the
top-level `recipes/` folder ships inside the package as `balancetrl.recipes` (a `package_dir` mapping, so the YAML
files stay where `make demo` and the docs name them, and `--config NAME` finds them in an installed wheel)."""

from setuptools import find_packages, setup

setup(
    packages=find_packages(exclude=["tests*", "benchmarks*", "recipes*"]) + ["balancetrl.recipes"],
    package_dir={"balancetrl.recipes": "recipes"},
)
