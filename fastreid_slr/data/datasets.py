"""Imports every dataset module so that each registers itself."""
from . import msmt17, personx, procedural  # noqa: F401
