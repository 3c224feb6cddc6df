"""SLR adaptation driven by fast-reid's trainer: the pseudo-label hook, trainers and stages."""
from .hooks import AdaptationTrainer, PseudoLabelHook, TeacherEMAHook
from .pseudo_labels import PseudoLabeler, PseudoLabels
from .stages import (check_adaptation_config, check_batch_per_rank, ensure_source_weights, is_slr_adaptation,
                     source_stage_config, write_final_results)
from .adaptation import SLRTrainer
from .base import PluginTrainer
from .checkpointer import SLRCheckpointer, UnreadableCheckpoint
from .pretraining import SourcePretrainTrainer

__all__ = ["AdaptationTrainer", "PluginTrainer", "PseudoLabelHook", "SLRCheckpointer", "UnreadableCheckpoint", "PseudoLabeler", "PseudoLabels", "SLRTrainer", "SourcePretrainTrainer",
           "TeacherEMAHook", "check_adaptation_config", "check_batch_per_rank", "ensure_source_weights",
           "is_slr_adaptation", "source_stage_config", "write_final_results"]
