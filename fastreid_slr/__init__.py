"""fastreid-slr: SLR pseudo-label refinement for unsupervised domain adaptive person Re-ID.

Importing the package applies the fixes fast-reid 1.4.0 needs to run at all on today's torch
(``compat``: its breaks, nothing else) and registers every component of the plugin in fast-reid's
registries: the ``SLR`` meta-architecture, the ``build_dual_resnet_backbone`` and
``build_slim_dual_backbone`` backbones, and the ``PersonX`` / ``MSMT17TrainVal`` datasets (the
demo's procedural datasets are a package of their own, ``procedural_reid``). What the plugin chose
beyond fast-reid lives in its own classes (``fastreid_slr.engine``) and tools, which a host
project's own runs never meet. ``faiss_build()`` names the faiss distribution behind ``import faiss`` (exactly one).
"""
from . import compat

compat.apply_all()

from . import modeling  # noqa: E402,F401  (registers the SLR meta-architecture and dual backbone)
from .config import add_run_config, add_slr_config  # noqa: E402
from .data import datasets  # noqa: E402,F401  (registers PersonX and MSMT17TrainVal)
from .installed_faiss import faiss_build  # noqa: E402

__all__ = ["add_run_config", "add_slr_config", "compat", "faiss_build"]
__version__ = "0.1.0"
