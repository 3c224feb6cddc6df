"""fast-reid 1.4.0 on today's torch, numpy and Python, and on machines without a GPU or network.

Two kinds of process-wide patch, one module each, every one named and tested
(tests/test_compat.py fails when any is removed):

- ``breaks``: fast-reid 1.4.0 code that fails on torch 2 / torchvision / numpy 2 / Python 3.10+
  (or silently stops learning);
- ``enablement``: what a CPU-only or offline machine needs (data loading without CUDA streams,
  AMP and DDP on the CPU, a launcher that picks gloo, the Python evaluator without Cython, ImageNet
  weights from a local file).

Behaviour the plugin chose on top of fast-reid (atomic checkpoints, safe loading, clearer errors,
the test loader's workers) is not patched here: the plugin's own trainers and checkpointer subclass
fast-reid's (``fastreid_slr.engine``). Every patch goes through ``replace``, which remembers the
original, so ``apply_all`` is idempotent and tests can undo a patch.
"""
import importlib.metadata
import threading
from typing import Any, Callable, Dict, Tuple

__all__ = ["FASTREID_VERSION", "apply_all", "applied_patches", "original", "replace", "undo"]

FASTREID_VERSION = "1.4.0"

_PATCHES: Dict[str, Callable[[], bool]] = {}
_RESULTS: Dict[str, bool] = {}
_ORIGINALS: Dict[Tuple[int, str], Tuple[Any, str, Any, bool]] = {}
_LOCK = threading.RLock()


def patch(name: str):
    """Register a patch function under ``name``; it returns True when it changed something."""

    def register(fn):
        _PATCHES[name] = fn
        return fn

    return register


def _setter(owner):
    """Plain attribute assignment, past any ``__setattr__`` override (a yacs config node would turn
    the attribute into a config key)."""
    return type.__setattr__ if isinstance(owner, type) else object.__setattr__


def replace(owner, name: str, new) -> None:
    """``owner.name = new``, remembering the attribute's first original (see ``original``/``undo``)."""
    with _LOCK:
        own = name in getattr(owner, "__dict__", {})
        _ORIGINALS.setdefault((id(owner), name), (owner, name, getattr(owner, name), own))
        _setter(owner)(owner, name, new)


def original(owner, name: str):
    """What ``owner.name`` was before any ``replace`` (the attribute itself if never replaced)."""
    entry = _ORIGINALS.get((id(owner), name))
    return getattr(owner, name) if entry is None else entry[2]


def undo() -> None:
    """Restore every replaced attribute (tests); ``apply_all`` then applies the patches again. The
    import-time shims (``breaks``) add names that had no original, and stay."""
    with _LOCK:
        for owner, name, value, own in _ORIGINALS.values():
            if own:
                _setter(owner)(owner, name, value)
            else:  # it came from the class: drop the shadowing attribute
                (type.__delattr__ if isinstance(owner, type) else object.__delattr__)(owner, name)
        _ORIGINALS.clear()
        _RESULTS.clear()


def _check_fastreid_version() -> None:
    found = importlib.metadata.version("fastreid")
    if found != FASTREID_VERSION:
        raise RuntimeError(f"fastreid-slr works with fastreid {FASTREID_VERSION} (its patches are written for that "
                           f"release), but fastreid {found} is installed: pip install --no-deps "
                           f"fastreid=={FASTREID_VERSION}")


def apply_all() -> Dict[str, bool]:
    """Apply every patch once, in definition order (``breaks`` first); name -> changed anything."""
    with _LOCK:
        if not _RESULTS:
            _check_fastreid_version()
        for name, fn in _PATCHES.items():
            if name not in _RESULTS:
                _RESULTS[name] = bool(fn())
        return dict(_RESULTS)


def applied_patches() -> Dict[str, bool]:
    """name -> whether the patch changed anything on this installation."""
    return dict(_RESULTS)


from . import breaks, enablement  # noqa: E402,F401  (register the patches, in this order)
