"""`python -m flip.training` (also under torchrun): see flip/training/cli.py."""
import sys

from .cli import main

sys.exit(main())
