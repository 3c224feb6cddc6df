"""Datasets fast-reid lacks, registered in its ``DATASET_REGISTRY`` on import."""


def configure_datasets(cfg) -> None:
    """Give the plugin's datasets what they read from the config. fast-reid constructs datasets
    from the registry without a config, so an entry point calls this once after freezing it
    (today: the procedural datasets' size and seed, ``DATASETS.PROCEDURAL``)."""
    from .procedural import ProceduralSpec, set_default_spec

    set_default_spec(ProceduralSpec.from_config(cfg))
