from segcore.waitpolicy import apply_wait_policy

apply_wait_policy()  # first: before anything loads torch and its OpenMP runtime (segcore/waitpolicy.py)

import sys  # noqa: E402

from .cli import main  # noqa: E402

sys.exit(main())
