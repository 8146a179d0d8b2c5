"""The one SamplerError class of the fovea sampler, whichever backend raises it.

The C extension defines it (so its own argument checks raise it without importing Python code); the NumPy twins
import it from here. Without the extension a plain ValueError subclass stands in.
"""
try:
    from flip._fovea import SamplerError
except ImportError:  # extension not built: the NumPy backends still work

    class SamplerError(ValueError):
        """Bad input to the fovea sampler."""


__all__ = ["SamplerError"]
