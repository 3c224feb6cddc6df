"""Where datasets live, and one clear error when they are not there."""
import os


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
        f"see the README for the layout {name} needs.")


def require_dataset_dir(path: str, name: str, subdirs=()) -> str:
    """Return ``path`` if it and ``subdirs`` exist, else raise one error naming what to put where."""
    missing = [p for p in [path] + [os.path.join(path, s) for s in subdirs] if not os.path.isdir(p)]
    if missing:
        raise missing_dataset_error(name, missing[0])
    return path
