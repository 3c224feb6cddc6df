"""Where datasets live, and one clear error when they are not there."""
import os
import re

_FASTREID_MISSING = re.compile(r'"(.*)" is not found')


def datasets_root() -> str:
    """fast-reid reads ``FASTREID_DATASETS`` once, when ``fastreid.data.build`` is imported."""
    import fastreid.data.build as build

    return build._root


def missing_dataset_error(name: str, path: str) -> FileNotFoundError:
    """One message for every missing dataset: what is missing, and where datasets are read from."""
    return FileNotFoundError(
        f"Dataset {name} not found: expected {os.path.abspath(path)}. "
        f"Datasets are read from $FASTREID_DATASETS "
        f"(now {os.environ.get('FASTREID_DATASETS', '<unset>, so ./datasets')}); "
        f"see docs/getting_started.md ('Datasets') for the layout {name} needs.")


def require_dataset_dir(path: str, name: str, subdirs=()) -> str:
    """Return ``path`` if it and ``subdirs`` exist, else raise one error naming what to put where."""
    missing = [p for p in [path] + [os.path.join(path, s) for s in subdirs] if not os.path.isdir(p)]
    if missing:
        raise missing_dataset_error(name, missing[0])
    return path


def build_dataset(name: str, **kwargs):
    """``DATASET_REGISTRY.get(name)(root=datasets_root(), **kwargs)``, with one clear error for an
    unknown name or missing files (fast-reid's own says only ``"<path>" is not found``)."""
    from fastreid.data.datasets import DATASET_REGISTRY

    if name not in DATASET_REGISTRY._obj_map:
        raise KeyError(f"Unknown dataset {name!r}; registered: {sorted(DATASET_REGISTRY._obj_map)}")
    try:
        return DATASET_REGISTRY.get(name)(root=datasets_root(), **kwargs)
    except RuntimeError as exc:
        missing = _FASTREID_MISSING.fullmatch(str(exc))
        if missing is None:
            raise
        raise missing_dataset_error(name, missing.group(1)) from exc
    except AssertionError as exc:  # fast-reid's MSMT17 asserts instead, when neither of its folders is there
        if str(exc) != "Dataset folder not found":
            raise
        raise missing_dataset_error(name, os.path.join(datasets_root(), "MSMT17_V1 (or MSMT17_V2)")) from exc
