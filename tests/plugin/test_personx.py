"""Datasets by name: PersonX reads the benchmark's layout and camera convention, and a missing or
unknown dataset is one clear error."""
import pytest
from PIL import Image

import fastreid_slr  # noqa: F401
from fastreid.data.datasets import DATASET_REGISTRY
from fastreid_slr.data.paths import build_dataset


def _write(dir_path, names):
    dir_path.mkdir(parents=True)
    for name in names:
        Image.new("RGB", (8, 16)).save(dir_path / name)


def test_personx_layout_and_cameras(tmp_path):
    root = tmp_path / "PersonX"
    _write(root / "bounding_box_train", ["0001_c3s1_000001.jpg", "0001_c12s1_000002.jpg", "0002_c8s1_000003.jpg"])
    _write(root / "query", ["0003_c4s1_000004.jpg"])
    _write(root / "bounding_box_test", ["0003_c10s1_000005.jpg", "-1_c11s1_000006.jpg", "0004_c11s1_000007.jpg"])

    data = DATASET_REGISTRY.get("PersonX")(root=str(tmp_path))
    train = sorted((p.split("/")[-1], pid, cam) for p, pid, cam in data.train)
    assert train == [("0001_c12s1_000002.jpg", "personx_1", "personx_5"),
                     ("0001_c3s1_000001.jpg", "personx_1", "personx_0"),
                     ("0002_c8s1_000003.jpg", "personx_2", "personx_2")]
    assert [(pid, cam) for _, pid, cam in data.query] == [(3, 1)]
    assert sorted((pid, cam) for _, pid, cam in data.gallery) == [(3, 3), (4, 4)]  # junk -1 dropped


@pytest.mark.parametrize("name", ["Market1501", "DukeMTMC", "PersonX"])
def test_missing_dataset_names_path_and_env(name, tmp_path, monkeypatch):
    """fast-reid's own error for Market/Duke is only '"<path>" is not found'."""
    import fastreid.data.build as build

    monkeypatch.setattr(build, "_root", str(tmp_path))  # where FASTREID_DATASETS pointed at import
    with pytest.raises(FileNotFoundError) as info:
        build_dataset(name)
    message = str(info.value)
    assert name in message and str(tmp_path) in message and "FASTREID_DATASETS" in message


def test_unknown_dataset_lists_the_registered_ones():
    with pytest.raises(KeyError, match="Unknown dataset 'Market'.*Market1501"):
        build_dataset("Market")
