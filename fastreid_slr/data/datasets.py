"""Imports every dataset module so that each registers itself."""
from . import personx, procedural  # noqa: F401
