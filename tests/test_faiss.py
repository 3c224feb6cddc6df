"""Exactly one faiss, named at start-up; the kNN on the caller's GPU, the exact CPU search otherwise."""
import importlib.metadata
import pathlib
import sys
import warnings

import numpy as np
import pytest

import fastreid_slr
from fastreid_slr import faiss_install
from fastreid_slr.engine import pseudo_labels
from slr_refine import distance, knn


def test_faiss_build_names_the_one_distribution_behind_import_faiss():
    import faiss

    installed = faiss_install.faiss_distributions()
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


# --------------------------------------------------------------------------- the kNN's device
def _features(seed=0, n=300, dim=16):
    rng = np.random.default_rng(seed)
    return distance.normalize_features(rng.normal(size=(n, dim)))


class _FakeGpuFaiss:
    """faiss-gpu on a machine with ``gpus`` GPUs, the index searched on the CPU."""

    def __init__(self, monkeypatch, gpus=4, fail=False):
        self.devices = []
        monkeypatch.setattr(distance.faiss, "StandardGpuResources", lambda: "resources", raising=False)
        monkeypatch.setattr(distance.faiss, "get_num_gpus", lambda: gpus)
        monkeypatch.setattr(distance.faiss, "index_cpu_to_gpu", self.to_gpu, raising=False)
        self.fail = fail

    def to_gpu(self, resources, device, index):
        self.devices.append(device)
        if self.fail:
            raise RuntimeError("Error in virtual void* faiss::gpu::StandardGpuResourcesImpl: cudaMalloc failed")
        return index


def test_gpu_knn_uses_the_callers_device(monkeypatch):
    features = _features()
    expected = knn(features, 10)
    fake = _FakeGpuFaiss(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback
        ranks = knn(features, 10, use_gpu=True, gpu_device=3)
    assert fake.devices == [3]
    np.testing.assert_array_equal(ranks, expected)


def test_failing_gpu_search_falls_back_to_the_exact_cpu_search(monkeypatch):
    features = _features(1)
    expected = knn(features, 10)
    fake = _FakeGpuFaiss(monkeypatch, fail=True)
    with pytest.warns(RuntimeWarning, match="GPU search on device 1 failed .*cudaMalloc.*searching on the CPU"):
        ranks = knn(features, 10, use_gpu=True, gpu_device=1)
    assert fake.devices == [1]
    np.testing.assert_array_equal(ranks, expected)


def test_missing_gpu_falls_back_with_a_warning(monkeypatch):
    features = _features(2)
    _FakeGpuFaiss(monkeypatch, gpus=1)
    with pytest.warns(RuntimeWarning, match="faiss sees 1 GPU\\(s\\), not device 2"):
        ranks = knn(features, 10, use_gpu=True, gpu_device=2)
    np.testing.assert_array_equal(ranks, knn(features, 10))


def test_pseudo_labels_search_on_this_ranks_gpu_after_releasing_torchs_cache(monkeypatch):
    import torch

    events = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 2)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: events.append("empty_cache"))
    real_jaccard = pseudo_labels.jaccard_distance

    def jaccard(features, **kwargs):
        events.append(("jaccard", kwargs["use_gpu"], kwargs["gpu_device"]))
        return real_jaccard(features, k1=kwargs["k1"], k2=kwargs["k2"])

    monkeypatch.setattr(pseudo_labels, "jaccard_distance", jaccard)
    from slr_refine import SLRRefiner

    labeler = pseudo_labels.PseudoLabeler(refiner=SLRRefiner(enabled=False), k1=10, k2=3, source_weight=0,
                                          use_gpu=True)
    labeler(_features(3))
    assert events == ["empty_cache", ("jaccard", True, 2)]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    events.clear()
    labeler(_features(3))
    assert events == [("jaccard", False, 0)]  # no CUDA: the CPU search, without a warning
