"""objascale package."""
