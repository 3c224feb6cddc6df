"""fastreid-slr: SLR pseudo-label refinement for unsupervised domain adaptive Re-ID, as a fast-reid plugin."""
from setuptools import find_packages, setup

setup(
    name="fastreid-slr",
    version="0.1.0",
    description="SLR pseudo-label refinement for UDA person re-identification, as a fast-reid plugin",
    license="Apache-2.0",
    packages=find_packages(include=["fastreid_slr", "fastreid_slr.*", "slr_refine", "procedural_reid"]),
    python_requires=">=3.9",
    # fastreid==1.4.0 itself is installed with --no-deps (its metadata pins torch 1.13, which has no
    # wheels for current Pythons); these are its real run-time needs plus ours (faiss: an extra).
    install_requires=[
        "torch>=2.0,<2.15",
        "torchvision>=0.15,<0.30",
        "numpy>=1.24,<3",
        "scipy>=1.10,<2",
        "scikit-learn>=1.3,<2",
        "hdbscan>=0.8.33,<0.9",
        "numba>=0.58,<1",  # compiled kernels of the Jaccard distance and the HDBSCAN fast path
        "opencv-python-headless>=4.8,<6",
        "yacs>=0.1.8,<0.2",
        "tabulate>=0.9,<1",
        "termcolor>=2.0,<4",
        "tensorboard>=2.12,<3",
        "Pillow>=9,<14",
        "psutil>=5.9,<8",
        "matplotlib>=3.7,<4",
    ],
    # Exactly one faiss: both builds install the same `faiss` package and overwrite each other, so
    # neither is a plain requirement. `make setup` picks "gpu" on a machine with CUDA (faiss-gpu,
    # Meta's CUDA 12 wheels for Python 3.10+), "cpu" elsewhere.
    extras_require={
        "cpu": ["faiss-cpu>=1.7.4,<2"],
        "gpu": ["faiss-gpu>=1.14.3,<2"],
        "test": ["pytest>=7,<10", "Cython>=3.0,<4"],
    },
)
