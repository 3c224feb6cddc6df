"""Datasets fast-reid lacks, registered in its ``DATASET_REGISTRY`` on import."""
