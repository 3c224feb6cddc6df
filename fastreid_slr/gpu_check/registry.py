"""The check's parts, in the order they run: later parts read what earlier ones leave (stage 1's
weights, the trained model, the features part's rate); ddp goes last, as it hands this process's
GPU memory to its ranks."""
from .ddp import Ddp
from .epoch import Epoch
from .features import Features
from .pipeline import Amp, Pipeline
from .pseudo_labels import PseudoLabels
from .steps import Repeatable, StepTime

PARTS = (Pipeline(), StepTime(), Features(), PseudoLabels(), Amp(), Repeatable(), Epoch(), Ddp())
