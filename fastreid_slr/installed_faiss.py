"""Which faiss this process runs: exactly one build, named.

faiss-cpu and faiss-gpu both install the one import package ``faiss``: with both installed, the
last one installed silently overwrote the other's files. ``faiss_build`` names the distribution
behind ``import faiss`` (tools/train_net.py logs it at start-up) and refuses a mixed install.
"""
import importlib.metadata
from typing import NamedTuple, Tuple

INSTALL_HINT = ("`make setup` installs the one that fits this machine; by hand: pip install -e '.[cpu]', "
                "or '.[gpu]' on a CUDA machine")


class FaissBuild(NamedTuple):
    distribution: str  # e.g. "faiss-cpu 1.15.1"
    gpu_index: bool  # this build has GPU indexes
    gpus: int  # CUDA devices faiss sees (0 for a CPU build)


def faiss_distributions() -> Tuple[str, ...]:
    """'<name> <version>' of every installed distribution providing the ``faiss`` package."""
    names = sorted(set(importlib.metadata.packages_distributions().get("faiss", ())), key=str.lower)
    return tuple(f"{name} {importlib.metadata.version(name)}" for name in names)


def faiss_build() -> FaissBuild:
    """The faiss behind ``import faiss``; one clear error when there is none, or more than one."""
    installed = faiss_distributions()
    if len(installed) > 1:
        raise RuntimeError(f"{' and '.join(installed)} are installed: they share the `faiss` package and "
                           f"overwrite each other's files. Uninstall all of them, then install one: {INSTALL_HINT}")
    try:
        import faiss
    except ImportError as exc:
        raise ImportError(f"faiss is not installed ({exc}): {INSTALL_HINT}") from exc
    gpu_index = hasattr(faiss, "StandardGpuResources")
    return FaissBuild(installed[0] if installed else f"faiss {faiss.__version__} (not installed by pip)",
                      gpu_index, faiss.get_num_gpus() if gpu_index else 0)
