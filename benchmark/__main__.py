import sys

from flip.runtime import apply_wait_policy; apply_wait_policy()  # noqa: E402,E702  before torch loads (flip/runtime.py)
from .cli import main

sys.exit(main())
