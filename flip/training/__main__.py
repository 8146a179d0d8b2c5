"""`python -m flip.training` (also under torchrun): see flip/training/cli.py."""
from segcore.waitpolicy import apply_wait_policy

apply_wait_policy()  # first: before torch and its OpenMP runtime load (segcore/waitpolicy.py)

import sys  # noqa: E402

from .cli import main  # noqa: E402

sys.exit(main())
