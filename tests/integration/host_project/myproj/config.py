"""myproj's own config keys, beside fast-reid's."""
from fastreid.config import CfgNode as CN


def add_myproj_config(cfg):
    """Add the MYPROJ namespace to a fast-reid config."""
    cfg.MYPROJ = CN()
    # Convolution blocks of build_myproj_backbone.
    cfg.MYPROJ.FOO = 1
    # Seed of every run (fast-reid 1.4.0 seeds at random).
    cfg.MYPROJ.SEED = 0
    return cfg
