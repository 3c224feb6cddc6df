#!/usr/bin/env python
"""Run a script, or code, with fast-reid and fastreid_slr's compat patches only: the plugin itself
(its registrations, its classes, anything else its import does) never loads.

    python tests/breaks_only.py SCRIPT [ARGS ...]
    python tests/breaks_only.py [--patches NAME,NAME] -c CODE

``fastreid_slr`` is entered in ``sys.modules`` as an empty package, so ``fastreid_slr.compat`` loads
alone, and a script's own ``import fastreid_slr`` gets that empty package. ``--patches`` applies
only the named patches (default: all of them). The run fails if the plugin got registered after all.
"""
import argparse
import importlib.util
import os
import runpy
import sys
import types


def load_compat():
    """``fastreid_slr.compat``, loaded without running ``fastreid_slr/__init__.py``."""
    location = importlib.util.find_spec("fastreid_slr").submodule_search_locations
    package = types.ModuleType("fastreid_slr")
    package.__path__ = list(location)
    sys.modules["fastreid_slr"] = package
    from fastreid_slr import compat

    return compat


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patches", help="comma-separated patch names (default: every patch)")
    parser.add_argument("-c", dest="code", help="code to run instead of a script")
    parser.add_argument("script_and_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    compat = load_compat()
    compat.apply_all(*(args.patches.split(",") if args.patches else ()))
    if args.code is not None:
        exec(compile(args.code, "<breaks_only -c>", "exec"), {"__name__": "__main__"})
    else:
        script, *script_args = args.script_and_args
        sys.argv = [script, *script_args]
        sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
        runpy.run_path(script, run_name="__main__")
    from fastreid.modeling.meta_arch import META_ARCH_REGISTRY

    if "SLR" in META_ARCH_REGISTRY._obj_map:
        sys.exit("breaks_only: the plugin was imported after all (SLR is registered)")


if __name__ == "__main__":
    main(sys.argv[1:])
