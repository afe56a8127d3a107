"""Does image pre-training transfer to few-shot IMU classification? Evidence, at a fixed budget.

Pre-trains on the 1000 real ImageNet photos of `shared/datasets/imagenet_sample_1000` (one per
class; the tar is unpacked into WORKDIR/photos) with each method of `--methods`, the same step
count and a wall-clock cap (`--budget-minutes`, enforced through the trainer's preemption path:
SIGTERM saves at the next step and stops; running the command again resumes a run the cap
stopped short, under a new cap), then runs the linear evaluation (the config's
protocol, 'tuned' by default: head rate chosen on validation) on WISDM 2019 and Daphnet for
every encoder and a randomly initialised one beside them. Each run also logs the BasicMotions
probe (`probe/f1_*`) into its metrics.jsonl. Prints the table and writes JSON.

Methods (name → config overrides of configs/img2imu_paper.py): `img2imu` (MoCo with
Shuffle BN + the sensor-aware set, the paper's method), `img2imu_crop` (the same with the mild
`crop` first), `img2imu_noshuffle` (without Shuffle BN), `mocov2` (MoCo + MoCo v2's
augmentations), `simclr` (SimCLR + the sensor-aware set), `simsiam` (SimSiam + its own
augmentations).

The paper's sensor baselines (`--sensor-methods`, recipes configs/<name>.py):
`simclr_1d`, `multitask_1d`, `cpc_1d`, each pre-trained per evaluated dataset on a corpus that
leaves that dataset out (`SENSOR_CORPORA`: WISDM 2019 ← Daphnet + BasicMotions, Daphnet ←
WISDM 2019) at that dataset's window length, under its own cap (`--sensor-steps`,
`--sensor-budget-minutes`); a randomly initialised 1D encoder, `random init (1D)`, is evaluated
beside them with the same corpus's normalisation.

The budget is 20 minutes per pre-training at width 32 on two free CPU cores:

    PYTHONPATH=. .venv/bin/python benchmarks/transfer.py \\
        --photos ../shared/datasets/imagenet_sample_1000/imagenet_sample_1000.tar \\
        --wisdm ../shared/datasets/wisdm2019_watch_accel_6act \\
        --daphnet ../shared/datasets/daphnet_fog --workdir runs/transfer \\
        --width 32 --batch 64 --queue 1024 --steps 700 --budget-minutes 20 \\
        --out benchmarks/out/transfer.json

Pre-trainings are independent: on a machine with more cores than one run uses, start several
processes with disjoint `--methods` and `--pretrain-only` on the same workdir, then the full
command, which reads finished runs back and only evaluates.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import tarfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
SENSOR_AWARE = "translate_x|permute_x|hue|jitter"
METHODS = {
    "img2imu": ("method=moco", f"augment.spec={SENSOR_AWARE}"),
    "mocov2": ("method=moco", "augment.spec=mocov2"),
    "img2imu_crop": ("method=moco", f"augment.spec=crop|{SENSOR_AWARE}"),
    "simclr": ("method=simclr", "model.head=simclr", f"augment.spec={SENSOR_AWARE}"),
    "simsiam": ("method=simsiam", "augment.spec=mocov2"),  # SimSiam uses MoCo v2's set
    "img2imu_noshuffle": ("method=moco", f"augment.spec={SENSOR_AWARE}",
                          "moco.shuffle_bn=False"),
}
DATASETS = {"wisdm2019": "finetune_wisdm2019.py", "daphnet": "finetune_daphnet.py"}
SENSOR_METHODS = ("simclr_1d", "multitask_1d", "cpc_1d")
# The 1D pre-training corpus of each evaluated dataset: the other datasets, never itself.
SENSOR_CORPORA = {"wisdm2019": ("daphnet", "basicmotions"), "daphnet": ("wisdm2019",)}
SENSOR_RANDOM = "random init (1D)"


def photo_folder(photos: Path, workdir: Path) -> Path:
    """The photos as a folder of JPEGs (the trainer reads folders), unpacking a tar once."""
    if photos.is_dir():
        return photos
    out = workdir / "photos"
    if not (out / ".unpacked").is_file():
        out.mkdir(parents=True, exist_ok=True)
        with tarfile.open(photos) as tar:
            members = [m for m in tar.getmembers()
                       if m.isfile() and m.name.lower().endswith((".jpeg", ".jpg", ".png"))]
            for member in members:  # flat, and never a path outside `out`
                member.name = Path(member.name).name
                tar.extract(member, out, filter="data")
        (out / ".unpacked").write_text(f"{len(members)}\n")
    return out


def add_pretrain_arguments(parser: argparse.ArgumentParser, steps: int, width: int) -> None:
    """What `pretrain` reads from `args`, besides the workdir (`resume` too: see
    `train_capped`)."""
    parser.add_argument("--photos", type=Path, required=True, help="folder or .tar of photos")
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--budget-minutes", type=float, default=20.0,
                        help="wall-clock cap per pre-training (saves and stops when reached)")
    parser.add_argument("--width", type=int, default=width)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--queue", type=int, default=1024)
    parser.add_argument("--no-resume", dest="resume", action="store_false",
                        help="read runs a cap stopped short back as they stand (a reduced "
                             "budget), instead of resuming them under a new cap")


def pretrain(run_dir: Path, method: tuple[str, ...], args, photos: Path) -> dict:
    """One pre-training (`method`: config overrides) under the wall-clock cap; what it reached.

    `args` carries width, batch, queue, steps and budget_minutes (see `train_capped`).
    """
    from img2imu_jax.config import load_config

    overrides = [f"data.dataset={photos}",
                 f"data.data_dir={args.workdir / 'tfds'}", f"model.width={args.width}",
                 f"batch_size={args.batch}", f"moco.queue_size={args.queue}",
                 f"total_steps={args.steps}", f"checkpoint_every={args.steps}",
                 f"log_every={max(1, args.steps // 20)}", "data.shuffle_buffer=1000",
                 f"evals.probe.every={max(1, args.steps // 4)}", *method]
    config = load_config(CONFIGS / "img2imu_paper.py", overrides)
    return {**train_capped(config, run_dir, args.steps, args.budget_minutes, args.resume),
            "overrides": overrides}


def pretrain_sensor(run_dir: Path, method: str, dataset: str, paths: dict[str, Path],
                    args) -> dict:
    """One 1D pre-training of `method` for evaluating on `dataset`: on `SENSOR_CORPORA[dataset]`
    at `dataset`'s window length, under the sensor cap; what it reached."""
    from img2imu_jax.config import load_config

    corpus = SENSOR_CORPORA[dataset]
    overrides = [f"data.dataset={','.join(corpus)}",
                 "data.data_dir=" + ",".join(str(paths.get(name) or "") for name in corpus),
                 f"data.seconds={dataset_config(dataset, []).data.seconds}",
                 f"batch_size={args.sensor_batch}", f"total_steps={args.sensor_steps}",
                 f"checkpoint_every={args.sensor_steps}",
                 f"log_every={max(1, args.sensor_steps // 20)}", "evals.probe.every=0",
                 f"seed={args.seed}"]
    config = load_config(CONFIGS / f"{method}.py", overrides)
    return {**train_capped(config, run_dir, args.sensor_steps, args.sensor_budget_minutes,
                           args.resume),
            "overrides": overrides}


def train_capped(config, run_dir: Path, steps: int, budget_minutes: float,
                 resume: bool = True) -> dict:
    """`train(config, run_dir)` under a wall-clock cap of `budget_minutes`, up to `steps`.

    A run that reached `steps` is read back, not trained again; one stopped short by the cap
    resumes (the wall time adds up), unless `resume` is False: then it is read back as it stands.
    """
    from img2imu_jax.checkpoint import CHECKPOINTS, finished_steps
    from img2imu_jax.pretrain import train

    wall = run_dir / "wall_seconds"  # the training's, kept for a run read back later
    trained_s = float(wall.read_text()) if wall.is_file() else None
    done = finished_steps(run_dir / CHECKPOINTS)
    if not done or (resume and done[-1] < steps):  # a run the cap stopped resumes under a new one
        started = time.perf_counter() - (trained_s or 0.0)
        timer = threading.Timer(budget_minutes * 60, os.kill, (os.getpid(), signal.SIGTERM))
        timer.start()
        try:
            train(config, run_dir)
        finally:
            timer.cancel()
        trained_s = time.perf_counter() - started
        wall.write_text(f"{trained_s:.1f}\n")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    trained = [row for row in rows if "loss" in row]
    probes = {row["step"]: {k: v for k, v in row.items() if k.startswith("probe/f1_")}
              for row in rows if any(k.startswith("probe/f1_") for k in row)}
    return {"checkpoints": str(run_dir / CHECKPOINTS),
            "steps": finished_steps(run_dir / CHECKPOINTS)[-1],
            "wall_s": trained_s,
            "last_loss": trained[-1]["loss"],
            "last_top1": trained[-1].get("contrastive_top1"),  # None: no contrastive top-1
            "probe": probes}


def suffix(seed: int) -> str:
    """Run directories of seed 0 keep their plain names."""
    return f"_seed{seed}" if seed else ""


def dataset_config(dataset: str, overrides: list[str]):
    """The finetune recipe of `dataset` with `overrides`."""
    from img2imu_jax.config import load_config
    from img2imu_jax.finetune.config import validate_finetune

    return load_config(CONFIGS / DATASETS[dataset], overrides, checks=validate_finetune)


def evaluate(dataset: str, data_dir: Path, runs: dict, args, sensor_runs: dict) -> dict:
    """The linear evaluation of every pre-trained encoder and random init on one dataset (and
    of the 1D ones `sensor_runs` pre-trained for it, with a random 1D encoder, when any)."""
    from img2imu_jax.checkpoint import saved_input_stats
    from img2imu_jax.finetune import results

    overrides = [f"data.data_dir={data_dir}", f"model.width={args.width}",
                 f"shots={tuple(args.shots)}", f"grid_nfft={tuple(args.nfft)}",
                 f"grid_gaps={tuple(args.gaps)}", f"linear.protocol={args.protocol}",
                 "save_models=False", *([f"linear.lrs={tuple(args.lrs)}"] if args.lrs else [])]
    config = dataset_config(dataset, overrides)
    encoders = {name: results.load_encoder(config, run["checkpoints"])
                for name, run in runs.items()}
    initial = config.copy_and_resolve_references()  # folds and shots keep config.seed
    initial.seed = args.seed
    encoders["random init"] = results.load_encoder(initial, None)
    normalisation = {}
    if sensor_runs:
        sensor = config.copy_and_resolve_references()
        sensor.model.encoder = "sensor_cnn"
        for name, run in sensor_runs.items():
            encoders[name] = results.load_encoder(sensor, run["checkpoints"])
            normalisation[name] = saved_input_stats(run["checkpoints"])
        sensor.seed = args.seed
        encoders[SENSOR_RANDOM] = results.load_encoder(sensor, None)
        # Every 1D run of this dataset pre-trained on the same corpus: its statistics.
        normalisation[SENSOR_RANDOM] = next(iter(normalisation.values()))
    started = time.perf_counter()
    tag = suffix(args.seed) + ("_lrs" + "_".join(f"{lr:g}" for lr in args.lrs) if args.lrs else "")
    record = results.run(config, args.workdir / f"finetune_{dataset}{tag}", encoders,
                         normalisation)
    linear = record["results"]["linear"]
    return {"overrides": overrides, "wall_s": time.perf_counter() - started,
            "f1": {name: {n: by_n[n]["mean"] for n in by_n} for name, by_n in linear.items()},
            "std": {name: {n: by_n[n]["std"] for n in by_n} for name, by_n in linear.items()},
            "learning_rates": {name: {n: by_n[n]["learning_rates"] for n in by_n}
                               for name, by_n in linear.items()}}


def table(result: dict) -> str:
    """One row per encoder; a 1D method's steps and top-1 are per evaluated dataset (each has
    its own pre-training), joined by ' / '."""
    shots = [str(n) for n in result["args"]["shots"]]
    header = "| encoder | steps | last top-1 | " + " | ".join(
        f"{d} {n}-shot" for d in result["evaluation"] for n in shots) + " |"
    lines = [header, "|---|---:|---:|" + "---:|" * (len(shots) * len(result["evaluation"]))]
    sensor = result.get("sensor_pretraining", {})
    sensor_names = sorted({name for by_name in sensor.values() for name in by_name},
                          key=SENSOR_METHODS.index)
    rows = [*result["pretraining"], "random init", *sensor_names,
            *([SENSOR_RANDOM] if sensor_names else [])]
    for name in rows:
        runs = ([result["pretraining"][name]] if name in result["pretraining"] else
                [by_name[name] for by_name in sensor.values() if name in by_name])
        cells = [" / ".join(str(run["steps"]) for run in runs) or "—",
                 " / ".join("—" if run["last_top1"] is None else f"{run['last_top1']:.3f}"
                            for run in runs) or "—"]
        for by_dataset in result["evaluation"].values():
            cells += [f"{100 * by_dataset['f1'][name][n]:.1f} ± "
                      f"{100 * by_dataset['std'][name][n]:.1f}" for n in shots]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wisdm", type=Path, required=True)
    parser.add_argument("--daphnet", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, default=Path("runs/transfer"))
    parser.add_argument("--methods", default="img2imu,img2imu_crop,mocov2,simclr,simsiam",
                        help=f"comma-separated, among {', '.join(METHODS)} ('' for none)")
    add_pretrain_arguments(parser, steps=700, width=32)
    parser.add_argument("--sensor-methods", default=",".join(SENSOR_METHODS),
                        help=f"comma-separated 1D baselines, among {', '.join(SENSOR_METHODS)} "
                             "('' for none)")
    parser.add_argument("--sensor-steps", type=int, default=1000)
    parser.add_argument("--sensor-batch", type=int, default=64)
    parser.add_argument("--sensor-budget-minutes", type=float, default=5.0,
                        help="wall-clock cap per 1D pre-training")
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument("--nfft", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--gaps", type=int, nargs="+", default=[8])
    parser.add_argument("--protocol", choices=("tuned", "paper"), default="tuned")
    parser.add_argument("--lrs", type=float, nargs="+", default=None,
                        help="the tuned protocol's head-rate grid (default: the config's)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/transfer.json"))
    parser.add_argument("--seed", type=int, default=0,
                        help="config.seed of every pre-training and the random-init encoder's "
                             "(the evaluation's folds stay the same); runs of seed S > 0 live "
                             "in <method>_seed<S>")
    parser.add_argument("--datasets", default="wisdm2019,daphnet", help="which to evaluate on")
    parser.add_argument("--pretrain-only", action="store_true",
                        help="stop after pre-training (processes given disjoint --methods can "
                             "share a workdir; a later run with all of them evaluates)")
    args = parser.parse_args()
    methods = [name for name in args.methods.split(",") if name]
    sensor_methods = [name for name in args.sensor_methods.split(",") if name]
    unknown = set(methods) - set(METHODS) | set(sensor_methods) - set(SENSOR_METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; known: "
                     f"{', '.join([*METHODS, *SENSOR_METHODS])}")
    if set(args.datasets.split(",")) - set(DATASETS):
        parser.error(f"--datasets: among {', '.join(DATASETS)}; got {args.datasets!r}")
    logging.basicConfig(level=logging.WARNING)
    args.workdir = args.workdir.resolve()
    started = time.perf_counter()
    runs = {}
    if methods:
        photos = photo_folder(args.photos, args.workdir)
        runs = {name: pretrain(args.workdir / "pretrain" / f"{name}{suffix(args.seed)}",
                               (*METHODS[name], f"seed={args.seed}"), args, photos)
                for name in methods}
    paths = {"wisdm2019": args.wisdm, "daphnet": args.daphnet}
    datasets = args.datasets.split(",")
    sensor_runs = {dataset: {name: pretrain_sensor(
        args.workdir / "pretrain_1d" / f"{name}_for_{dataset}{suffix(args.seed)}", name, dataset,
        paths, args) for name in sensor_methods} for dataset in datasets}
    if args.pretrain_only:
        return
    evaluation = {dataset: evaluate(dataset, paths[dataset], runs, args, sensor_runs[dataset])
                  for dataset in datasets}
    result = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "pretraining": runs, "sensor_pretraining": sensor_runs,
              "evaluation": evaluation, "wall_s": time.perf_counter() - started}
    print(table(result), end="")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out} ({result['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
