"""The refinement engine, ``slr_refine``, works where torch and fast-reid cannot be imported."""
import subprocess
import sys
import textwrap

from tiny import REPO

# An import hook makes torch, torchvision and fastreid unimportable (as if not installed), then one
# epoch pair of the whole engine: Jaccard distance, source term, ABMT's eps, DBSCAN, SLR, HDBSCAN.
BLOCK = textwrap.dedent("""
    import sys

    class Blocked:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "torchvision", "fastreid"):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked)")

    sys.meta_path.insert(0, Blocked())
""")
SCRIPT = BLOCK + textwrap.dedent("""
    import numpy as np
    import slr_refine

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(20, 16))
    ids = rng.integers(0, 20, 300)
    labels = []
    for epoch in range(2):
        features = centers[ids] + 0.5 * rng.normal(size=(300, 16))
        source = centers[rng.integers(0, 20, 100)] + 0.5 * rng.normal(size=(100, 16))
        dist, absent = slr_refine.add_source_term(slr_refine.jaccard_distance(features, k1=10, k2=3),
                                                  slr_refine.source_distances(features, source)[0], 0.1)
        labels.append(slr_refine.cluster_dbscan(dist, slr_refine.eps_from_rho(dist, 0.02, absent), 4, absent))
    refiner = slr_refine.SLRRefiner(min_cluster_size=4)
    refiner.step(labels[0])
    result = refiner.step(labels[1])
    loaded = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "torchvision", "fastreid", "fastreid_slr"})
    print(result.stats["refined"], result.stats["clusters_after"], loaded)
""")


def test_the_engine_refines_without_torch_or_fastreid():
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    refined, clusters, loaded = done.stdout.split(maxsplit=2)
    assert refined == "1.0" and int(clusters) >= 5  # SLR ran on the second epoch and kept clusters
    assert loaded.strip() == "[]"  # neither torch, fast-reid nor the plugin was imported


def test_blocking_is_real():
    """The guard the test relies on: with it, torch and the plugin (which needs fast-reid) fail to import."""
    for module in ("torch", "fastreid_slr"):
        done = subprocess.run([sys.executable, "-c", BLOCK + f"import {module}"], cwd=REPO, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode != 0 and "(blocked)" in done.stderr, module
