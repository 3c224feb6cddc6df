"""SLR adaptation driven by fast-reid's trainer: the trainers of both stages, their checkpointer,
the pseudo-label hook and its labelers, the stage 1 -> stage 2 glue, and the AdaBN control."""
from .adabn import reestimate_batch_norm, target_train_loader
from .adaptation import SLRTrainer
from .plugin_trainer import PluginTrainer
from .checkpointer import SLRCheckpointer, UnreadableCheckpoint
from .hooks import AdaptationTrainer, PseudoLabelHook, TeacherEMAHook
from .pretraining import SourcePretrainTrainer
from .pseudo_labels import PseudoLabeler, PseudoLabels, TrueIdentityLabeler
from .stages import (check_adaptation_config, check_batch_per_rank, ensure_source_weights, is_slr_adaptation,
                     source_stage_config, write_final_results)

__all__ = ["AdaptationTrainer", "PluginTrainer", "PseudoLabelHook", "PseudoLabeler", "PseudoLabels",
           "SLRCheckpointer", "SLRTrainer", "SourcePretrainTrainer", "TeacherEMAHook", "TrueIdentityLabeler",
           "UnreadableCheckpoint", "check_adaptation_config", "check_batch_per_rank", "ensure_source_weights",
           "is_slr_adaptation", "reestimate_batch_norm", "source_stage_config", "target_train_loader",
           "write_final_results"]
