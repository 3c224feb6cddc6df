#!/usr/bin/env python
"""Compile fast-reid's Cython rank evaluator in place (far faster than the Python one: docs/performance.md, "CPU runs").

Run once at set-up. Without a C compiler or Cython it prints one warning and exits 0: fast-reid
then evaluates with its Python implementation.
"""
import importlib.util
import os
import subprocess
import sys


def main() -> int:
    spec = importlib.util.find_spec("fastreid")
    if spec is None:
        print("warning: fastreid is not installed; nothing to compile", file=sys.stderr)
        return 0
    cylib = os.path.join(os.path.dirname(spec.origin), "evaluation", "rank_cylib")
    if any(name.startswith("rank_cy") and name.endswith(".so") for name in os.listdir(cylib)):
        return 0
    result = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=cylib,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        last = result.stdout.strip().splitlines()[-1:] or ["(no output)"]
        print(f"warning: could not compile fast-reid's Cython rank evaluator ({last[0]}); "
              f"evaluation will use the slower Python implementation", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
