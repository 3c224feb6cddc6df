"""fast-reid's training parts as the plugin's trainers use them; fast-reid's own stay as they are.

- ``DeviceAMPTrainer``: ``SOLVER.AMP`` on the model's device (fast-reid's ``AMPTrainer`` asserts
  CUDA): float16 with a grad scaler on CUDA, bfloat16 without one on the CPU;
- ``PluginEvaluator``: without fast-reid's compiled Cython ranking, the Python one with a warning
  (fast-reid's ``ReidEvaluator`` runs ``make`` inside site-packages and exits the process when
  that fails);
- ``OncePerIterationPrinter``: fast-reid's metric printer, which divides by zero when it writes
  twice at one iteration before the iteration timer has a history (a run whose first epochs have
  one or two iterations: the plugin's tiny runs).
"""
import logging
import time

import torch
from fastreid.engine.train_loop import AMPTrainer
from fastreid.evaluation import ReidEvaluator
from fastreid.utils.events import CommonMetricPrinter, get_event_storage
from fastreid.utils.params import ContiguousParams

logger = logging.getLogger(__name__)


class DeviceAMPTrainer(AMPTrainer):
    """Mixed precision on the model's device."""

    def __init__(self, model, data_loader, optimizer, param_wrapper):
        device = next(model.parameters()).device.type
        scaler = torch.amp.GradScaler(device, enabled=device == "cuda")  # bfloat16 needs no scaling
        super().__init__(model, data_loader, optimizer, param_wrapper, grad_scaler=scaler)

    @classmethod
    def replacing(cls, trainer) -> "DeviceAMPTrainer":
        return cls(trainer.model, trainer.data_loader, trainer.optimizer, trainer.param_wrapper)

    def run_step(self):
        assert self.model.training, "[DeviceAMPTrainer] model was changed to eval mode!"
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start

        device = next(self.model.parameters()).device.type
        with torch.autocast(device_type=device, dtype=torch.float16 if device == "cuda" else torch.bfloat16):
            loss_dict = self.model(data)
            losses = sum(loss_dict.values())

        self.optimizer.zero_grad()
        self.grad_scaler.scale(losses).backward()
        self._write_metrics(loss_dict, data_time)
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()
        if isinstance(self.param_wrapper, ContiguousParams):
            self.param_wrapper.assert_buffer_is_valid()


class PluginEvaluator(ReidEvaluator):
    """fast-reid's evaluator, never compiling inside site-packages."""

    _warned = False

    def _compile_dependencies(self):
        try:
            from fastreid.evaluation.rank_cylib.rank_cy import evaluate_cy  # noqa: F401
        except ImportError:
            if not PluginEvaluator._warned:
                PluginEvaluator._warned = True
                logger.warning("fast-reid's Cython rank evaluator is not compiled: evaluating with the slower "
                               "Python one. `python tools/build_rank_cylib.py` compiles it where a C compiler "
                               "and Cython are present.")


class OncePerIterationPrinter(CommonMetricPrinter):
    """fast-reid's printer; a second write at the same iteration is skipped."""

    def write(self):
        if self._last_write is not None and self._last_write[0] == get_event_storage().iter:
            return
        super().write()
