"""Training scripts of the `balancetrl` CLI (the counterparts of `trl/scripts/*.py`)."""
