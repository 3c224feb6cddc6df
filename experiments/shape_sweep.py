"""Adaptation against its controls on procedural targets of several shapes, camera-blind and camera-aware.

    python experiments/shape_sweep.py [--output output/sweep] [--shapes demo,small,...] [--seeds 0,1]
                                     [--workers 2] [--tables-only] [opts...]

Each shape is a procedural data set (both domains; sizes, cameras per identity, images per
camera, how strongly the cameras dominate the picture). On each shape and SEED, from one stage-1
model (``configs/Demo/slr-procedural.yml`` plus the shape's opts plus ``opts``): source only, AdaBN,
and stage 2 as ABMT (refinement off) and as SLR, each with camera-blind and camera-aware
(``SLR.CLUSTER.CAMERA_AWARE bn``) clustering, and SLR camera-aware with module (h)'s min cluster
size relative to the clusters (``SLR.REFINE.MIN_CLUSTER_SIZE_FRACTION 0.4``), and ABMT and SLR
under CA-Jaccard (``SLR.CLUSTER.CAMERA_JACCARD``) alone and with ``bn``; on the first shape also
the true-identity control and two sabotaged pipelines (``experiments/sabotaged_run.py``: shuffled
pseudo-labels, a teacher that is never updated), which must not beat AdaBN.

Every run is a ``tools/train_net.py`` process in ``<output>/<shape>/seed<k>/<setting>``; a run whose
``final_results.json`` exists is skipped, an unfinished one resumes from its last checkpoint, so the
sweep can be stopped and started again at any time. ``--workers`` runs go side by side (one thread
each, as ``make demo``). After every finished run the tables are rewritten to
``<output>/sweep.md`` (per shape: target mAP per SEED, and the last epoch's pseudo-labels against
the true identities) and ``<output>/sweep.json``.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time
from typing import Dict, List

import numpy as np

from fastreid_slr.engine.records import EPOCHS_FILE, RunRecord

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "configs", "Demo", "slr-procedural.yml")
P = "DATASETS.PROCEDURAL."

# Target shapes (both domains share them). The demo's: ~400 identities x ~12 images over 2-6 of 6
# mild cameras; "small": ~120 identities x ~14 images over 2-5 of 8 cameras with their own look;
# "market": Market-1501's ~17 images per identity; "camera-dominated": backdrop, light and blur
# follow the camera (the nearest neighbour of an image is mostly another person in its camera).
SHAPES: Dict[str, List[str]] = {
    "demo": [],
    "small": [P + "NUM_TRAIN_IDS", "120", P + "NUM_TEST_IDS", "100", P + "NUM_CAMERAS", "8",
              P + "MAX_CAMERAS_PER_ID", "5", P + "IMAGES_PER_CAMERA", "4", P + "CAMERA_DOMINANCE", "0.5"],
    "market": [P + "NUM_TRAIN_IDS", "300", P + "NUM_TEST_IDS", "150", P + "MAX_CAMERAS_PER_ID", "5",
               P + "IMAGES_PER_CAMERA", "5"],
    "camera-dominated": [P + "NUM_TRAIN_IDS", "300", P + "NUM_TEST_IDS", "150", P + "CAMERA_DOMINANCE", "1.0"],
}
AWARE = ["SLR.CLUSTER.CAMERA_AWARE", "bn"]
BLIND = ["SLR.CLUSTER.CAMERA_AWARE", "none"]
CA_JACCARD = ["SLR.CLUSTER.CAMERA_JACCARD", "True"]
ABMT = ["SLR.REFINE.ENABLED", "False"]
# setting -> (label, flags before the opts, opts); "source only" is stage 1's own final evaluation.
SETTINGS = {
    "adabn": ("AdaBN", ["--adabn"], []),
    "abmt-blind": ("ABMT, camera-blind", [], ABMT + BLIND),
    "slr-blind": ("SLR, camera-blind", [], BLIND),
    "abmt-aware": ("ABMT, camera-aware", [], ABMT + AWARE),
    "slr-aware": ("SLR, camera-aware", [], AWARE),
    "slr-aware-relsize": ("SLR, camera-aware, min cluster size 0.4 x median", [],
                          AWARE + ["SLR.REFINE.MIN_CLUSTER_SIZE_FRACTION", "0.4"]),
    "abmt-ca-jaccard": ("ABMT, CA-Jaccard", [], ABMT + BLIND + CA_JACCARD),
    "slr-ca-jaccard": ("SLR, CA-Jaccard", [], BLIND + CA_JACCARD),
    "abmt-aware-ca-jaccard": ("ABMT, camera-aware + CA-Jaccard", [], ABMT + AWARE + CA_JACCARD),
    "slr-aware-ca-jaccard": ("SLR, camera-aware + CA-Jaccard", [], AWARE + CA_JACCARD),
}
CONTROLS = {  # the first shape only
    "oracle": ("true identities", [], ["SLR.ORACLE", "True"]),
    "shuffled-labels": ("SLR camera-aware, shuffled pseudo-labels", ["--sabotage", "shuffled-labels"], AWARE),
    "frozen-teacher": ("SLR camera-aware, teacher never updated", ["--sabotage", "frozen-teacher"], AWARE),
}
QUALITY = ("clusters_after", "identities", "outlier_fraction", "pair_precision", "pair_recall")


class Job:
    def __init__(self, output, shape, seed, setting, label, flags, opts, common):
        self.shape, self.seed, self.setting, self.label = shape, seed, setting, label
        self.folder = os.path.join(output, shape, f"seed{seed}")
        self.run_dir = os.path.join(self.folder, setting)
        self.source_dir = os.path.join(self.folder, "source")
        script = "sabotaged_run.py" if flags[:1] == ["--sabotage"] else None
        program = os.path.join(REPO, "experiments", script) if script else os.path.join(REPO, "tools", "train_net.py")
        resume = [] if "--adabn" in flags else ["--resume"]
        self.command = [sys.executable, program, *flags, "--config-file", CONFIG, *resume, *SHAPES[shape], *common,
                        *opts, "SEED", str(seed), "OUTPUT_DIR", self.run_dir, "SLR.SOURCE.OUTPUT_DIR", self.source_dir]
        self.process = None

    @property
    def done(self) -> bool:
        return os.path.isfile(os.path.join(self.run_dir, "final_results.json"))

    @property
    def source_ready(self) -> bool:
        return os.path.isfile(os.path.join(self.source_dir, "final_results.json"))

    def start(self, threads: int):
        os.makedirs(self.folder, exist_ok=True)
        print(f"[sweep] start {self.shape} seed {self.seed} {self.setting}", flush=True)
        self.log = open(self.run_dir + ".log", "a")
        self.process = subprocess.Popen(self.command, stdout=self.log, stderr=subprocess.STDOUT,
                                        env=dict(os.environ, OMP_NUM_THREADS=str(threads)))
        self.started = time.perf_counter()

    def finished(self) -> bool:
        code = self.process.poll()
        if code is None:
            return False
        self.log.close()
        print(f"[sweep] {'done' if code == 0 else f'FAILED (exit {code}, see {self.run_dir}.log)'}: {self.shape} seed "
              f"{self.seed} {self.setting} ({(time.perf_counter() - self.started) / 60:.1f} min)", flush=True)
        return True


def jobs_for(args) -> List[Job]:
    jobs = []
    for i, shape in enumerate(args.shapes):
        for seed in args.seeds:
            settings = dict(SETTINGS, **(CONTROLS if i == 0 and not args.no_controls else {}))
            jobs += [Job(args.output, shape, seed, name, label, flags, opts, args.opts)
                     for name, (label, flags, opts) in settings.items() if name in args.settings]
    return jobs


def runnable(job: Job, running: List[Job]) -> bool:
    """A job may start when its stage-1 model exists, or when no job of its shape and seed is
    running (it then trains stage 1 itself; AdaBN waits for a training job to do that)."""
    if job.source_ready:
        return True
    busy = any(r.folder == job.folder for r in running)
    return not busy and job.setting != "adabn"


def run(jobs: List[Job], workers: int, output: str):
    """Runs the unfinished jobs; stopped (Ctrl-C, SIGTERM), it stops its runs too: they resume
    from their last checkpoint next time."""
    pending = [j for j in jobs if not j.done]
    running: List[Job] = []
    print(f"[sweep] {len(jobs) - len(pending)} of {len(jobs)} runs already done", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("[sweep] stopped"))
    try:
        _schedule(pending, running, workers, jobs, output)
    finally:
        for job in running:
            job.process.terminate()
        for job in running:
            job.process.wait()


def _schedule(pending: List[Job], running: List[Job], workers: int, jobs: List[Job], output: str):
    failed = []
    while pending or running:
        for job in [j for j in running if j.finished()]:
            running.remove(job)
            (failed if not job.done else []).append(job)
            write_tables(jobs, output)
        while len(running) < workers:
            job = next((j for j in pending if runnable(j, running)), None)
            if job is None:
                break
            pending.remove(job)
            job.start(threads=1)
            running.append(job)
        if not running and pending:  # nothing can start: every remaining job waits on a failed stage 1
            break
        time.sleep(2)
    if failed or pending:
        sys.exit(f"[sweep] {len(failed)} run(s) failed, {len(pending)} not started: " +
                 ", ".join(f"{j.shape}/seed{j.seed}/{j.setting}" for j in failed + pending))


# --------------------------------------------------------------------------- tables
def read_run(job: Job):
    if not job.done:
        return None
    with open(os.path.join(job.run_dir, "final_results.json")) as f:
        result = {"mAP": json.load(f)["mAP"]}
    if os.path.isfile(os.path.join(job.run_dir, EPOCHS_FILE)):
        epochs = RunRecord.read(job.run_dir).pseudo_labels()
        if epochs:
            result.update({k: epochs[-1].get(k) for k in QUALITY})
    return result


def read_source_only(folder: str):
    path = os.path.join(folder, "source", "final_results.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return {"mAP": json.load(f)["mAP"]}


def _mean(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _cell(value, digits=1):
    return "–" if value is None else f"{value:.{digits}f}"


def tables(jobs: List[Job]) -> (str, dict):
    shapes = list(dict.fromkeys(j.shape for j in jobs))
    seeds = sorted({j.seed for j in jobs})
    lines, data = [], {}
    for shape in shapes:
        mine = [j for j in jobs if j.shape == shape]
        rows = {"source-only": ("source only", {s: read_source_only(os.path.join(mine[0].folder.rsplit("/", 1)[0],
                                                                                   f"seed{s}")) for s in seeds})}
        for setting in dict.fromkeys(j.setting for j in mine):
            label = next(j.label for j in mine if j.setting == setting)
            rows[setting] = (label, {j.seed: read_run(j) for j in mine if j.setting == setting})
        data[shape] = {name: {"label": label, "seeds": runs} for name, (label, runs) in rows.items()}
        lines += [f"### {shape}", "", "| run | " + " | ".join(f"mAP SEED {s}" for s in seeds) +
                  " | mAP mean | last epoch: clusters / true ids | outliers | pair P / R |",
                  "|---" * (len(seeds) + 5) + "|"]
        for name, (label, runs) in rows.items():
            maps = [runs.get(s)["mAP"] if runs.get(s) else None for s in seeds]
            quality = {k: _mean([r.get(k) for r in runs.values() if r]) for k in QUALITY}
            has_labels = quality["clusters_after"] is not None
            lines.append(f"| {label} | " + " | ".join(_cell(m) for m in maps) + f" | {_cell(_mean(maps))} | " +
                         (f"{_cell(quality['clusters_after'], 0)} / {_cell(quality['identities'], 0)} | "
                          f"{_cell(quality['outlier_fraction'], 2)} | {_cell(quality['pair_precision'], 2)} / "
                          f"{_cell(quality['pair_recall'], 2)} |" if has_labels else "– | – | – |"))
        lines += ["", *verdicts(data[shape], seeds), ""]
    return "\n".join(lines), data


def verdicts(rows: dict, seeds) -> List[str]:
    """The sweep's questions, per SEED: gains over AdaBN, SLR against ABMT, camera-aware against blind."""
    def m(name, seed):
        run = rows.get(name, {}).get("seeds", {}).get(seed)
        return run["mAP"] if run else None

    out = []
    for seed in seeds:
        adabn = m("adabn", seed)
        parts = []
        for cam in ("aware", "blind"):
            abmt, slr = m(f"abmt-{cam}", seed), m(f"slr-{cam}", seed)
            if None not in (adabn, abmt, slr):
                parts.append(f"{cam}: ABMT {abmt - adabn:+.1f}, SLR {slr - adabn:+.1f} over AdaBN, SLR {slr - abmt:+.1f} "
                             f"over ABMT")
        for method in ("abmt", "slr"):
            aware, blind = m(f"{method}-aware", seed), m(f"{method}-blind", seed)
            if None not in (aware, blind):
                parts.append(f"{method.upper()} aware {aware - blind:+.1f} over blind")
            for ca in ("ca-jaccard", "aware-ca-jaccard"):
                if None not in (aware, m(f"{method}-{ca}", seed)):
                    parts.append(f"{method.upper()} {ca} {m(f'{method}-{ca}', seed) - aware:+.1f} over aware")
        if parts:
            out.append(f"- SEED {seed}: " + "; ".join(parts))
    return out


def write_tables(jobs: List[Job], output: str):
    text, data = tables(jobs)
    with open(os.path.join(output, "sweep.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(output, "sweep.json"), "w") as f:
        json.dump(data, f, indent=1)
    return text


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=os.path.join(REPO, "output", "sweep"))
    parser.add_argument("--shapes", type=lambda s: s.split(","), default=list(SHAPES))
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1])
    parser.add_argument("--workers", type=int, default=2, help="runs side by side, one thread each")
    parser.add_argument("--no-controls", action="store_true", help="skip the oracle and sabotaged runs")
    parser.add_argument("--settings", type=lambda s: s.split(","), default=list(SETTINGS) + list(CONTROLS),
                        help="only these settings (comma-separated names)")
    parser.add_argument("--tables-only", action="store_true", help="rewrite the tables from finished runs")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides for every run")
    args = parser.parse_args()
    for given, known in ((args.shapes, list(SHAPES)), (args.settings, list(SETTINGS) + list(CONTROLS))):
        if set(given) - set(known):
            parser.error(f"unknown {sorted(set(given) - set(known))}; known: {known}")
    os.makedirs(args.output, exist_ok=True)
    jobs = jobs_for(args)
    if not args.tables_only:
        run(jobs, args.workers, args.output)
    print(write_tables(jobs, args.output))


if __name__ == "__main__":
    main()
