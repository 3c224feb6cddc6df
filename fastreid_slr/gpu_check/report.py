"""Running the parts into one report: ``gpu_check.json`` (the machine, each part's numbers or its
error, the peak GPU memory, the failed parts), rewritten after every part so that a check cut short
keeps what it measured, and one table built from the parts' own summaries."""
import json
import logging
import os
import time
import traceback
from typing import Sequence

import torch
from tabulate import tabulate

from ..installed_faiss import faiss_build
from .context import Context
from .measuring import largest
from .part import Part, fmt
from .registry import PARTS

REPORT_FILE = "gpu_check.json"
NO_GPU_NOTE = ("No CUDA device: this is the tiny CPU mode (dual ResNet-18, 32x16, a few iterations). Nothing in "
               "this report was measured on a GPU.")


def machine(context: Context) -> dict:
    """What ran the check: mode, GPUs, torch, CUDA, faiss, the config and its model."""
    cfg = context.cfg
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0)]
    try:
        faiss = str(faiss_build())
    except (RuntimeError, ImportError) as exc:
        faiss = f"ERROR: {exc}"
    model = (f"{cfg.MODEL.BACKBONE.NAME} {cfg.MODEL.BACKBONE.DEPTH}, {cfg.INPUT.SIZE_TRAIN[0]}x"
             f"{cfg.INPUT.SIZE_TRAIN[1]}, batch {cfg.SOLVER.IMS_PER_BATCH}, PRETRAIN {cfg.MODEL.BACKBONE.PRETRAIN}")
    return {"mode": "full" if context.full else "tiny", "gpu_measured": context.full, "gpus": gpus,
            "torch": torch.__version__, "cuda": torch.version.cuda, "faiss": faiss,
            "config": os.path.relpath(context.config_file), "model": model,
            "note": None if context.full else NO_GPU_NOTE}


class Check:
    """Runs ``parts`` in order on ``context``; each records its numbers, or its error, under its name."""

    def __init__(self, context: Context, parts: Sequence[Part] = PARTS):
        self.context, self.parts = context, tuple(parts)
        self.report = {"machine": machine(context), "parts": context.results}

    def run(self) -> dict:
        """Every part, in the process as fast-reid's default_setup leaves it (cuDNN autotuning as
        the config says, its datasets set up); then the peak GPU memory and the failed parts."""
        self.context.apply_datasets(self.context.cfg)
        torch.backends.cudnn.benchmark = self.context.cfg.CUDNN_BENCHMARK
        print(f"[gpu-check] {self.report['machine']['model']} ({'CUDA' if self.context.full else 'tiny CPU mode'})",
              flush=True)
        for part in self.parts:
            self.run_part(part)
        parts = self.report["parts"]
        self.report["peak_gpu_memory_gb"] = largest(*(p.get("peak_gpu_memory_gb") for p in parts.values()))
        self.report["failed"] = [name for name, part in parts.items() if part.get("ok") is False]
        self.save()
        return self.report

    def run_part(self, part: Part):
        reason = part.skip_reason(self.context)
        if reason is not None:
            self.report["parts"][part.name] = {"ran": False, "reason": f"not run: {reason}"}
            return
        print(f"[gpu-check] {part.name} ...", flush=True)
        start = time.perf_counter()
        try:
            result = part.run(self.context)
        except Exception as exc:  # noqa: BLE001 - one part's failure must not hide the others' numbers
            logging.getLogger("fastreid_slr").exception(f"gpu-check part {part.name} failed")
            result = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-4000:]}
        result.setdefault("ok", True)
        result["ran"] = True
        result["seconds"] = round(time.perf_counter() - start, 2)
        self.report["parts"][part.name] = result
        self.save()
        print(f"[gpu-check] {part.name}: {'ok' if result['ok'] else 'FAILED ' + result.get('error', '')} "
              f"({result['seconds']:.0f} s)", flush=True)

    def save(self):
        with open(os.path.join(self.context.output, REPORT_FILE), "w") as f:
            json.dump(self.report, f, indent=1)

    def table(self) -> str:
        """One row per part: what it ran, its own summary of what it measured, ok / FAILED."""
        rows = []
        for part in self.parts:
            result = self.report["parts"].get(part.name, {})
            if not result.get("ran", False):
                measured, status = result.get("reason", "-"), "-"
            else:
                measured = "-" if "error" in result else part.summary(result)
                status = "ok" if result["ok"] else "FAILED" + (f": {result['error'][:80]}" if "error" in result else "")
            rows.append((part.name, part.what, measured, status))
        rows.append(("peak GPU memory", "largest part", fmt(self.report.get("peak_gpu_memory_gb"), " GB"), "-"))
        return tabulate(rows, headers=["part", "what", "measured", "status"], tablefmt="github")

    def print_report(self):
        ran_on = self.report["machine"]
        print(f"\ngpu-check: {ran_on['model']}; GPUs: {', '.join(ran_on['gpus']) or 'none'}; faiss: {ran_on['faiss']}")
        print(self.table())
        if ran_on["note"]:
            print(ran_on["note"])
        failed = self.report["failed"]
        print(f"JSON: {os.path.join(self.context.output, REPORT_FILE)}"
              + (f"; FAILED: {', '.join(failed)}" if failed else ""))
