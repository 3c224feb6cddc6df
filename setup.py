"""fastreid-slr: SLR pseudo-label refinement for unsupervised domain adaptive Re-ID, as a fast-reid plugin."""
import os

from setuptools import find_packages, setup


def engine_requirements():
    """slr_refine's own needs (requirements/engine.txt), which its torch-free test venv installs too."""
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "requirements", "engine.txt")) as f:
        return [line.split("#")[0].strip() for line in f if line.split("#")[0].strip()]


EXPORT_REQUIREMENTS = ["onnx>=1.23,<2", "onnxscript>=0.7,<0.8", "onnxruntime>=1.32,<2"]

setup(
    name="fastreid-slr",
    version="0.1.0",
    description="SLR pseudo-label refinement for UDA person re-identification, as a fast-reid plugin",
    license="Apache-2.0",
    packages=find_packages(include=["fastreid_slr", "fastreid_slr.*", "slr_refine", "procedural_reid"]),
    python_requires=">=3.9",
    # fastreid==1.4.0 itself is installed with --no-deps (its metadata pins torch 1.13, which has no
    # wheels for current Pythons); these are its real run-time needs plus ours (faiss: an extra).
    install_requires=engine_requirements() + [
        "torch>=2.0,<2.15",
        "torchvision>=0.15,<0.30",
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
    # "export": tools/export.py (ONNX: onnx, onnxscript, which torch's exporter needs, and
    # onnxruntime for the check); training never imports them. "test" includes it: the suite
    # checks exports against onnxruntime.
    extras_require={
        "cpu": ["faiss-cpu>=1.7.4,<2"],
        "gpu": ["faiss-gpu>=1.14.3,<2"],
        "export": EXPORT_REQUIREMENTS,
        "test": ["pytest>=7,<10", "Cython>=3.0,<4"] + EXPORT_REQUIREMENTS,
    },
)
