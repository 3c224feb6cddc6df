"""Imports every dataset module so that each registers itself."""
from . import msmt17, personx  # noqa: F401
