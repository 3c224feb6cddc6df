"""fastreid-slr: SLR pseudo-label refinement for unsupervised domain adaptive person Re-ID.

Importing the package makes fast-reid 1.4.0 work on today's torch (``compat``) and registers
every component of the plugin in fast-reid's registries.
"""
from . import compat

compat.apply_all()

from .config import add_slr_config  # noqa: E402
from .data import datasets  # noqa: E402,F401  (registers PersonX and the procedural datasets)

__all__ = ["add_slr_config", "compat"]
__version__ = "0.1.0"
