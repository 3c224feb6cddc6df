"""The ddp part: tools/train_net.py's run on two ranks (``--num-gpus 2``), every rank recording what
it trained on (``ranks.RankRecordingTrainer``); the ranks must agree."""
import json
import os
import subprocess

import torch

from .part import Part, fmt


class Ddp(Part):
    """Stage 2 of the check's config from stage 1's weights on two ranks: NCCL on two GPUs (gloo on
    the CPU with ``--ddp on``). The last part: it hands this process's GPU memory to the ranks."""

    name = "ddp"
    what = "--num-gpus 2"

    def skip_reason(self, context):
        if context.ddp_mode == "off":
            return "--ddp off"
        if context.ddp_mode == "on":
            return None
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return None if gpus >= 2 else f"{gpus} GPU(s) visible; the 2-GPU NCCL run needs two"

    def run(self, context) -> dict:
        cfg = context.cfg.clone()
        cfg.SLR.SOURCE.WEIGHTS = context.stage1_weights()  # the run reuses them: no stage 1
        cfg.OUTPUT_DIR = os.path.join(context.output, "ddp")
        context.free_gpu_memory()
        per_rank = 2 * cfg.DATALOADER.NUM_INSTANCE  # the least a rank's PK batch takes (tiny mode's 8 is less)
        cfg.SOLVER.IMS_PER_BATCH = max(cfg.SOLVER.IMS_PER_BATCH, 2 * per_rank)
        os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
        config_file = os.path.join(cfg.OUTPUT_DIR, "check_config.yaml")
        with open(config_file, "w") as f:  # the ranks run this very config
            f.write(cfg.dump())
        command = [*context.rank_command, "--config-file", config_file, "--num-gpus", "2", "--dist-url", "auto"]
        with open(os.path.join(context.output, "ddp.log"), "w") as log:
            done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT,
                                  env=dict(os.environ, PYTHONUNBUFFERED="1"))
        if done.returncode != 0:
            raise RuntimeError(f"the 2-rank run failed (rc {done.returncode}): see {log.name}")
        ranks = []
        for rank in (0, 1):
            with open(os.path.join(cfg.OUTPUT_DIR, f"rank{rank}.json")) as f:
                ranks.append(json.load(f))
        same = ranks[0]["labels"] == ranks[1]["labels"] and ranks[0]["epochs"] == ranks[1]["epochs"]
        backends = [r["backend"] for r in ranks]
        expected = "nccl" if context.device.type == "cuda" else "gloo"
        return {"backends": backends, "devices": [r["device"] for r in ranks], "epochs": len(ranks[0]["epochs"]),
                "labels_identical": same, "ok": same and backends == [expected, expected]}

    def summary(self, result: dict) -> str:
        return f"backends {result['backends']}, labels identical {fmt(result['labels_identical'])}"
