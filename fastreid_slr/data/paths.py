"""Where datasets live, and one clear error when they are not there."""
import os


def datasets_root() -> str:
    """fast-reid reads ``FASTREID_DATASETS`` once, when ``fastreid.data.build`` is imported."""
    import fastreid.data.build as build

    return build._root


def require_dataset_dir(path: str, name: str, subdirs=()) -> str:
    """Return ``path`` if it and ``subdirs`` exist, else raise one error naming what to put where."""
    missing = [p for p in [path] + [os.path.join(path, s) for s in subdirs] if not os.path.isdir(p)]
    if missing:
        raise FileNotFoundError(
            f"Dataset {name} not found: expected the directory {os.path.abspath(missing[0])}. "
            f"Datasets are read from $FASTREID_DATASETS "
            f"(now {os.environ.get('FASTREID_DATASETS', '<unset>, so ./datasets')}); "
            f"see the README for the layout {name} needs.")
    return path
