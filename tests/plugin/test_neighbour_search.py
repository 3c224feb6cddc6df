"""Where the clustering's search runs: exactly one faiss, named at start-up; torch on the run's
device (no faiss-gpu needed), faiss on the caller's GPU, each with its CPU fallback; every backend
gives the dense search's neighbours."""
import importlib.metadata
import pathlib
import sys
import warnings

import numpy as np
import pytest
import torch

import fastreid_slr
from fastreid_slr import installed_faiss
from fastreid_slr.neighbour_search import TorchSearch, build_neighbour_search
from slr_refine import BlasSearch, FaissSearch, normalize_features, search_backends, search_neighbours


def test_faiss_build_names_the_one_distribution_behind_import_faiss():
    import faiss

    installed = installed_faiss.faiss_distributions()
    assert len(installed) == 1, installed  # what `pip list` shows: one faiss
    build = fastreid_slr.faiss_build()
    assert build.distribution == installed[0]
    name = installed[0].split()[0]
    files = importlib.metadata.distribution(name).files
    imported = pathlib.Path(faiss.__file__).resolve()
    assert any(pathlib.Path(f.locate()).resolve() == imported for f in files), "another package owns `faiss`"
    assert build.gpu_index == hasattr(faiss, "StandardGpuResources")
    assert build.gpus == (faiss.get_num_gpus() if build.gpu_index else 0)


def test_two_faiss_builds_are_refused(monkeypatch):
    monkeypatch.setattr(importlib.metadata, "packages_distributions", lambda: {"faiss": ["faiss-gpu", "faiss-cpu"]})
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "1.15.1")
    with pytest.raises(RuntimeError, match="faiss-cpu 1.15.1 and faiss-gpu 1.15.1 are installed: .* `make setup`"):
        fastreid_slr.faiss_build()


def test_no_faiss_says_how_to_install_one(monkeypatch):
    monkeypatch.setattr(importlib.metadata, "packages_distributions", lambda: {})
    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` now fails
    with pytest.raises(ImportError, match="faiss is not installed .*pip install -e '.\\[cpu\\]'"):
        fastreid_slr.faiss_build()


# --------------------------------------------------------------------------- backends
def _features(seed=0, n=300, dim=16):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, dim))
    return normalize_features(centres[rng.integers(0, 20, n)] + 0.7 * rng.normal(size=(n, dim)))


def _same(found, expected):
    np.testing.assert_array_equal(found.ranks, expected.ranks)
    np.testing.assert_array_equal(found.farthest, expected.farthest)
    np.testing.assert_array_equal(found.nearest_other, expected.nearest_other)


def test_torch_search_gives_the_blas_searchs_neighbours_in_small_blocks():
    features, others = _features(0), _features(1, n=150)
    expected = search_neighbours(features, 21, farthest=True, others=others, backend=BlasSearch())
    # 1 KB blocks: a few query rows at a time, as a large set would be on a GPU
    found = search_neighbours(features, 21, farthest=True, others=others,
                              backend=TorchSearch("cpu", max_block_bytes=4 * 300 * 7))
    _same(found, expected)


def test_torch_search_gives_the_blas_searchs_camera_lists():
    """CA-Jaccard's within- and across-camera lists: masked blocks give what BLAS gives."""
    features = _features(7)
    cameras = np.random.default_rng(7).choice([0, 1, 2, 3], size=len(features), p=[0.5, 0.3, 0.19, 0.01])
    kwargs = dict(farthest=True, others=features[:40], cameras=cameras, within=6, across=21)
    expected = search_neighbours(features, 9, backend=BlasSearch(block_size=64), **kwargs)
    found = search_neighbours(features, 9, backend=TorchSearch("cpu", max_block_bytes=4 * 300 * 7), **kwargs)
    _same(found, expected)
    np.testing.assert_array_equal(found.within, expected.within)
    np.testing.assert_array_equal(found.across, expected.across)


def test_torch_search_out_of_memory_falls_back_to_the_cpu_with_a_warning(monkeypatch):
    features = _features(2)
    expected = search_neighbours(features, 10, farthest=True)

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(TorchSearch, "_candidates", out_of_memory)
    with pytest.warns(RuntimeWarning, match="ran out of memory on cpu .*Tried to allocate.*searching on the CPU"):
        found = search_neighbours(features, 10, farthest=True, backend=TorchSearch("cpu"))
    _same(found, expected)


class _FakeGpuFaiss:
    """faiss-gpu on a machine with ``gpus`` GPUs, the index searched on the CPU."""

    def __init__(self, monkeypatch, gpus=4, fail=False):
        self.devices = []
        monkeypatch.setattr(search_backends.faiss, "StandardGpuResources", lambda: "resources", raising=False)
        monkeypatch.setattr(search_backends.faiss, "get_num_gpus", lambda: gpus)
        monkeypatch.setattr(search_backends.faiss, "index_cpu_to_gpu", self.to_gpu, raising=False)
        self.fail = fail

    def to_gpu(self, resources, device, index):
        self.devices.append(device)
        if self.fail:
            raise RuntimeError("Error in virtual void* faiss::gpu::StandardGpuResourcesImpl: cudaMalloc failed")
        return index


def test_faiss_searches_on_the_callers_gpu(monkeypatch):
    features, others = _features(3), _features(4, n=100)
    expected = search_neighbours(features, 10, farthest=True, others=others)
    fake = _FakeGpuFaiss(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback
        found = search_neighbours(features, 10, farthest=True, others=others, backend=FaissSearch(gpu_device=3))
    assert fake.devices == [3, 3, 3]  # nearest, farthest, nearest source: a search each
    _same(found, expected)


def test_failing_faiss_gpu_search_falls_back_to_the_cpu(monkeypatch):
    features = _features(5)
    expected = search_neighbours(features, 10)
    fake = _FakeGpuFaiss(monkeypatch, fail=True)
    with pytest.warns(RuntimeWarning, match="GPU search on device 1 failed .*cudaMalloc.*searching on the CPU"):
        found = search_neighbours(features, 10, backend=FaissSearch(gpu_device=1))
    assert fake.devices == [1]
    np.testing.assert_array_equal(found.ranks, expected.ranks)


def test_missing_faiss_gpu_falls_back_with_a_warning(monkeypatch):
    features = _features(6)
    _FakeGpuFaiss(monkeypatch, gpus=1)
    with pytest.warns(RuntimeWarning, match="faiss sees 1 GPU\\(s\\), not device 2"):
        found = search_neighbours(features, 10, backend=FaissSearch(gpu_device=2))
    np.testing.assert_array_equal(found.ranks, search_neighbours(features, 10).ranks)


def test_the_configured_backend_on_the_runs_device(monkeypatch):
    """auto: torch on the rank's CUDA device, BLAS on the CPU; faiss on the rank's GPU after
    torch's cache is released (faiss allocates outside it)."""
    events = []
    assert isinstance(build_neighbour_search("auto", "cpu"), BlasSearch)
    assert isinstance(build_neighbour_search("auto", "cuda"), BlasSearch)  # no CUDA here: the CPU's
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 2)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: events.append("empty_cache"))
    backend = build_neighbour_search("auto", "cuda")
    assert isinstance(backend, TorchSearch) and backend.device == torch.device("cuda", 2)
    assert isinstance(build_neighbour_search("blas", "cuda"), BlasSearch)
    backend = build_neighbour_search("faiss", "cuda")
    assert isinstance(backend, FaissSearch) and backend.gpu_device == 2 and events == ["empty_cache"]
    assert build_neighbour_search("faiss", "cpu").gpu_device is None
    with pytest.raises(ValueError, match="SLR.CLUSTER.SEARCH must be one of .*got 'annoy'"):
        build_neighbour_search("annoy", "cpu")
