"""myproj: a small fast-reid project of its own (its config keys, backbone and dataset), which
mixes fastreid_slr in the way a user would. Importing it registers its components."""
from . import backbone, dataset  # noqa: F401  (register build_myproj_backbone and MyProjToys)
from .config import add_myproj_config

__all__ = ["add_myproj_config"]
