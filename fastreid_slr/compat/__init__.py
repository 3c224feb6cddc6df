"""What fast-reid 1.4.0 needs to run at all on today's torch, torchvision, numpy and Python, with or
without CUDA, as pip installs it: the ``breaks`` patches, applied when ``fastreid_slr`` is imported.

A break is fast-reid code that cannot work there: it raises, hangs, or silently stops learning.
Each fix changes nothing where fast-reid works (docs/compat.md "fast-reid 1.4.0 on today's torch" lists
them; tests/plugin/test_compat.py shows each failure without its fix). Behaviour the plugin chose is no
patch: it lives in the plugin's own classes and tools, which only the plugin's runs use.

Every patch goes through ``replace``, which records the original under the patch's name, so
``apply_all`` is idempotent and ``undo`` restores fast-reid, one patch or all (tests).
"""
import importlib.metadata
import threading
from typing import Any, Callable, Dict, List, NamedTuple

__all__ = ["FASTREID_VERSION", "apply_all", "applied_patches", "original", "replace", "replaced", "undo"]

FASTREID_VERSION = "1.4.0"

_MISSING = object()  # the original of a name that did not exist


class _Replacement(NamedTuple):
    patch: str
    owner: Any
    name: str
    original: Any
    own: bool  # the name was the owner's own (not inherited from its class)


_PATCHES: Dict[str, Callable[[], bool]] = {}
_RESULTS: Dict[str, bool] = {}
_REPLACEMENTS: List[_Replacement] = []
_APPLYING: List[str] = []  # the patch whose function is running
_LOCK = threading.RLock()


def patch(name: str):
    """Register a patch function under ``name``; it returns True when it changed something."""

    def register(fn):
        _PATCHES[name] = fn
        return fn

    return register


def _is_mapping(owner) -> bool:
    """A plain dict such as ``sys.modules``: its items are replaced (a yacs config node is a dict
    subclass whose attributes are replaced)."""
    return type(owner) is dict


def _get(owner, name: str):
    return owner.get(name, _MISSING) if _is_mapping(owner) else getattr(owner, name, _MISSING)


def _set(owner, name: str, value) -> None:
    """Plain assignment, past any ``__setattr__`` override (a yacs config node would turn the
    attribute into a config key); ``owner[name]`` for a dict such as ``sys.modules``."""
    if _is_mapping(owner):
        owner[name] = value
    else:
        (type.__setattr__ if isinstance(owner, type) else object.__setattr__)(owner, name, value)


def _delete(owner, name: str) -> None:
    if _is_mapping(owner):
        del owner[name]
    else:
        (type.__delattr__ if isinstance(owner, type) else object.__delattr__)(owner, name)


def _find(owner, name: str):
    return next((r for r in _REPLACEMENTS if r.owner is owner and r.name == name), None)


def replace(owner, name: str, new) -> None:
    """``owner.name = new`` (``owner[name]`` for a dict), recording the first original under the
    patch being applied (see ``original`` / ``undo``). A name that did not exist is added."""
    with _LOCK:
        if not _APPLYING:
            raise RuntimeError("compat.replace is for patch functions, which apply_all runs")
        if _find(owner, name) is None:
            own = name in owner if _is_mapping(owner) else name in getattr(owner, "__dict__", {})
            _REPLACEMENTS.append(_Replacement(_APPLYING[-1], owner, name, _get(owner, name), own))
        _set(owner, name, new)


def original(owner, name: str):
    """What ``owner.name`` was before any ``replace`` (the attribute itself if never replaced)."""
    entry = _find(owner, name)
    return _get(owner, name) if entry is None else entry.original


def replaced(name: str) -> List[tuple]:
    """``(owner, attribute, original)`` of everything patch ``name`` replaced."""
    return [(r.owner, r.name, r.original) for r in _REPLACEMENTS if r.patch == name]


def undo(*names: str) -> None:
    """Restore what the named patches replaced (every patch when none is named); ``apply_all``
    applies them again. For tests."""
    with _LOCK:
        chosen = set(names or _RESULTS)
        for entry in reversed([r for r in _REPLACEMENTS if r.patch in chosen]):
            if entry.original is _MISSING or not entry.own:  # added, or shadowing its class's
                _delete(entry.owner, entry.name)
            else:
                _set(entry.owner, entry.name, entry.original)
            _REPLACEMENTS.remove(entry)
        for name in chosen:
            _RESULTS.pop(name, None)


def _check_fastreid_version() -> None:
    found = importlib.metadata.version("fastreid")
    if found != FASTREID_VERSION:
        raise RuntimeError(f"fastreid-slr works with fastreid {FASTREID_VERSION} (its patches are written for that "
                           f"release), but fastreid {found} is installed: pip install --no-deps "
                           f"fastreid=={FASTREID_VERSION}")


def apply_all(*names: str) -> Dict[str, bool]:
    """Apply the named patches (every patch when none is named) once each, in definition order;
    name -> whether it changed anything."""
    unknown = set(names) - set(_PATCHES)
    if unknown:
        raise KeyError(f"no such patch: {sorted(unknown)}; patches: {list(_PATCHES)}")
    with _LOCK:
        if not _RESULTS:
            _check_fastreid_version()
        for name, fn in _PATCHES.items():
            if name not in _RESULTS and (not names or name in names):
                _APPLYING.append(name)
                try:
                    _RESULTS[name] = bool(fn())
                finally:
                    _APPLYING.pop()
        return dict(_RESULTS)


def applied_patches() -> Dict[str, bool]:
    """name -> whether the patch changed anything on this installation."""
    return dict(_RESULTS)


from . import breaks  # noqa: E402,F401  (registers the patches)
