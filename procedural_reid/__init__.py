"""procedural_reid: a procedural two-domain pedestrian Re-ID dataset, the data of fastreid-slr's demo
and tests (not part of the method: the plugin, ``fastreid_slr``, imports nothing of it).

Importing the package registers ``ProceduralA`` and ``ProceduralB`` in fast-reid's
``DATASET_REGISTRY`` (import ``fastreid_slr`` first: fast-reid's data module needs its fixes on
today's torch). Their size and seed are config keys (``add_procedural_config``:
``DATASETS.PROCEDURAL.*``); fast-reid builds datasets without the config, so an entry point calls
``apply_procedural_config(cfg)`` once, after merging it.
"""
from .config import add_procedural_config, apply_procedural_config
from .datasets import ProceduralA, ProceduralB
from .generate import RENDERER_VERSION, ensure_generated, plan
from .spec import ProceduralSpec, get_default_spec, set_default_spec

__all__ = ["ProceduralA", "ProceduralB", "ProceduralSpec", "RENDERER_VERSION", "add_procedural_config",
           "apply_procedural_config", "ensure_generated", "get_default_spec", "plan", "set_default_spec"]
