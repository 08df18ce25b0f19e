"""Peak resident memory of deploy, the every-step recipe and the sensitivity analysis on EfficientNet-Lite0, as the
number of evaluation samples grows (issue 17's goal: flat in the number of samples, the recipe under 3 GB).

    python benchmarks/memory.py [--cases deploy,sensitivity,recipe] [--samples 200,1300,10000] [--stages] [--work DIR]

Each (case, samples) runs in its own child process (``--child``), which runs ``edgeopt.deploy`` from the ONNX
file and the image sources to the written artifacts and prints its own peak resident set
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) and wall time; the parent prints one row per run (the child's
stderr, with each stage's line as it ends, passes through). With ``--stages`` each row is followed by the
peak resident set of every stage deploy reports (a thread samples
``/proc/self/statm`` every 20 ms; the stage is the latest name deploy's progress gave): where the memory goes.

Data as a user keeps it: ImageNet val1300's JPEGs through an image list (``list.txt`` of ``path label``
lines; the 10,000 case repeats the 1,300 paths, so it costs nothing on disk), preprocessed by deploy's image
source (shorter side 256, centre crop 224, EfficientNet-Lite's ``(x - 127) / 128``); calibration on the 200
``calib_samples`` images (a flat folder). Cases: ``deploy`` (calibrate, quantize, emulate, score every
sample), ``sensitivity`` (deploy --sensitivity), ``recipe`` (deploy --max-drop -100: a budget never met, so
every step runs, each screened on 500 samples). The machine is shared: each row also prints the 1-minute load
average. Skips (exit 0) when ../shared/data is absent.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shared_data import DATA, require

PREPROCESS = "resize=256,crop=224,offset=-127,std=128"
DEVICE = "arm-cortex-a78-xnnpack"
CASES = {"deploy": {}, "sensitivity": {"sensitivity": True}, "recipe": {"max_drop": -100.0, "recipe_samples": 500}}


def _prepare(work: Path, samples: list[int]) -> Path:
    """EfficientNet-Lite0 as ONNX and one image list per sample count, in ``work`` (kept between runs)."""
    work.mkdir(parents=True, exist_ok=True)
    model = work / "efficientnet_lite0.onnx"
    if not model.exists():
        import torch
        from imagenet import efficientnet_lite0

        from edgeopt.pipeline.frontend.load import export_torch

        model.write_bytes(export_torch(efficientnet_lite0(), torch.zeros(1, 3, 224, 224)).SerializeToString())
    root = DATA / "imagenet"
    lines = [ln.split(",") for ln in (root / "dataset.txt").read_text().splitlines() if ln.strip()]
    entries = [f"{root / 'val1300' / Path(name.strip()).name} {int(label)}" for name, label in lines]
    for n in samples:
        repeated = (entries * (n // len(entries) + 1))[:n]
        (work / f"val{n}.txt").write_text("\n".join(repeated) + "\n")
    return model


class StagePeaks:
    """Deploy's progress reporter that records the peak resident set (MB) and the seconds of each stage, and
    which counted task (``int8 inference``, AdaRound's layers ...) was running at the stage's peak."""

    def __init__(self) -> None:
        self.stage, self.task = "start", ""
        self.peaks: dict[str, tuple[float, str]] = {"start": (0.0, "")}
        self.seconds = {"start": 0.0}
        self._page_mb, self._since, self._stop = os.sysconf("SC_PAGE_SIZE") / 2**20, time.perf_counter(), False
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def __call__(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[self.stage] += now - self._since
        if self.stage != "start":  # as it ends, so that a run stopped early still shows where it got
            print(f"  ended {self.stage[:44]:44} {self.peaks[self.stage][0]:>7.0f} MB {self.seconds[self.stage]:>7.1f} s",
                  file=sys.stderr, flush=True)
        self._since, self.stage, self.task = now, stage, ""
        self.peaks.setdefault(stage, (0.0, ""))
        self.seconds.setdefault(stage, 0.0)

    def count(self, task: str, done: int, total: int | None) -> None:
        """Note the task now running (its counts are not needed)."""
        self.task = task

    def stop(self) -> list[tuple[str, float, float, str]]:
        """Stop sampling; (stage, peak MB, seconds, task at the peak) in the order the stages started."""
        self("end")
        self._stop = True
        self._thread.join()
        return [(name, *self.peaks[name][:1], self.seconds[name], self.peaks[name][1])
                for name in self.peaks if name != "end"]

    def _sample(self) -> None:
        with open("/proc/self/statm") as statm:
            while not self._stop:
                statm.seek(0)
                resident = int(statm.read().split()[1]) * self._page_mb
                stage, task = self.stage, self.task
                if resident > self.peaks.get(stage, (0.0, ""))[0]:
                    self.peaks[stage] = (resident, task)
                time.sleep(0.02)


def _child(case: str, n: int, work: Path) -> None:
    from edgeopt.workflows.deploy import deploy

    start = time.perf_counter()
    stages = StagePeaks()
    with tempfile.TemporaryDirectory() as out:
        result = deploy(str(work / "efficientnet_lite0.onnx"), DEVICE, data=str(work / f"val{n}.txt"),
                        calib=str(DATA / "imagenet" / "calib_samples"), preprocess=PREPROCESS, out=out,
                        progress=stages, **CASES[case])
    accuracy = result.report["accuracy"]
    print(json.dumps({"case": case, "samples": n, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "wall_s": time.perf_counter() - start, "fp32": accuracy["fp32"], "int8": accuracy["int8"],
                      "n": accuracy["n"], "load": os.getloadavg()[0], "stages": stages.stop()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="deploy,sensitivity,recipe")
    parser.add_argument("--samples", default="200,1300,10000")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "edgeopt-memory")
    parser.add_argument("--stages", action="store_true", help="print each stage's peak resident set too")
    parser.add_argument("--child", nargs=2, metavar=("CASE", "SAMPLES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child[0], int(args.child[1]), args.work)
        return
    require("imagenet/val1300", "imagenet/calib_samples", "imagenet/dataset.txt")
    samples = [int(s) for s in args.samples.split(",")]
    _prepare(args.work, samples)
    print(f"{'case':12} {'samples':>8} {'peak MB':>9} {'wall s':>8} {'fp32 %':>7} {'int8 %':>7} {'load':>5}")
    for case in args.cases.split(","):
        for n in samples:
            # The child's stderr (its stages as they end, with --stages) passes through.
            run = subprocess.run([sys.executable, __file__, "--work", str(args.work), "--child", case, str(n)],
                                 stdout=subprocess.PIPE, text=True, check=False)
            if run.returncode != 0:
                print(f"{case:12} {n:>8} failed (exit {run.returncode}): see its error above")
                continue
            row = json.loads(run.stdout.strip().splitlines()[-1])
            print(f"{case:12} {n:>8} {row['peak_mb']:>9.0f} {row['wall_s']:>8.1f} {row['fp32']:>7.2f} "
                  f"{row['int8']:>7.2f} {row['load']:>5.1f}", flush=True)
            if args.stages:
                for stage, peak, seconds, task in row["stages"]:
                    print(f"    {stage[:44]:44} {peak:>7.0f} MB {seconds:>7.1f} s  at the peak: {task}", flush=True)


if __name__ == "__main__":
    main()
