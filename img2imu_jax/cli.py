"""`img2imu`: the command line. Parses and dispatches; the work lives in the modules it calls."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from img2imu_jax import __version__, tpu_host
from img2imu_jax.paths import user_path

# Modules only the `pretrain` extra installs, and what a missing one means for the user.
EXTRA_MODULES = ("tensorflow", "tensorflow_datasets", "clu", "tensorboard")
EXTRA_HINT = "pip install 'img2imu-jax[pretrain]'"
# Libraries whose logging is chatter at the default verbosity.
CHATTY_LOGGERS = ("absl", "jax", "jax._src", "orbax", "tensorflow", "tensorflow_datasets")
# Arguments that name files or folders: local or gs://, any other scheme refused up front.
PATH_ARGUMENTS = ("workdir", "out_dir", "data_dir", "output", "checkpoint", "out", "input",
                  "reference")


def main(argv: Sequence[str] | None = None) -> int:
    tpu_host.keep_libtpu_out()
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    args.overrides = [item.removeprefix("--config.") for item in extra
                      if item.startswith("--config.")]
    unknown = [item for item in extra if not item.startswith("--config.")]
    if unknown or (args.overrides and args.command not in ("pretrain", "finetune", "compile")):
        parser.error(f"unrecognized arguments: {' '.join(unknown or extra)}")
    configure_output(getattr(args, "verbose", 0) - getattr(args, "quiet", 0))
    try:
        for name in PATH_ARGUMENTS:
            if getattr(args, name, None):
                user_path(getattr(args, name), what=f"--{name.replace('_', '-')}")
        args.handler(args)
    except (ValueError, OSError, RuntimeError) as error:
        print(f"img2imu {args.command}: error: {error}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as error:
        if error.name is None or error.name.partition(".")[0] not in EXTRA_MODULES:
            raise
        print(f"img2imu {args.command}: error: needs the pretrain extra (module {error.name!r} "
              f"is not installed): {EXTRA_HINT}", file=sys.stderr)
        return 1
    return 0


def configure_output(verbosity: int) -> None:
    """0 (default): our progress messages, the libraries' errors only; each -v lets more of
    TensorFlow, absl, JAX and Orbax through, each -q silences more of ours.

    The TensorFlow variables must be set before TensorFlow is first imported: its C++ log
    level (the oneDNN banner and CUDA probing are INFO/WARNING lines) is read once at import.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", str(max(0, 2 - verbosity)))
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # no banner; TF only decodes images here
    ours = {-2: logging.ERROR, -1: logging.WARNING, 0: logging.INFO}.get(
        max(-2, verbosity), logging.DEBUG)
    theirs = {0: logging.ERROR, 1: logging.WARNING}.get(max(0, verbosity), logging.INFO)
    logging.basicConfig(level=theirs, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(theirs)
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(theirs)
    logging.getLogger("img2imu_jax").setLevel(ours)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="img2imu",
        description="IMG2IMU in JAX: image pre-training for few-shot IMU classification.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    spectrogram = commands.add_parser(
        "spectrogram",
        help="render an accelerometer window (CSV of x, y, z) as an IMG2IMU spectrogram PNG",
        description="Render one accelerometer window as the RGB spectrogram image IMG2IMU feeds "
        "to its image network (x, y, z -> R, G, B; low frequencies at the bottom).",
    )
    spectrogram.add_argument("input", metavar="INPUT.csv",
                             help="x, y, z columns (found by header name, or the only three) and "
                             "optionally a timestamp column")
    spectrogram.add_argument("--sample-rate", type=float, default=None, metavar="HZ",
                             help="of INPUT.csv (default: from its timestamp column; with one, "
                             "the samples are interpolated onto this rate)")
    spectrogram.add_argument("--columns", default=None, metavar="X,Y,Z[,TIME]",
                             help="which columns: header names or 1-based numbers")
    spectrogram.add_argument("--axes", default=None, metavar="AXES.png",
                             help="also write a figure to read: the image beside one panel per "
                             "axis, in Hz and seconds")
    spectrogram.add_argument("--nfft", type=int, required=True, metavar="N", help="STFT length")
    spectrogram.add_argument("--noverlap", type=int, required=True, metavar="M",
                             help="samples shared by consecutive STFT frames")
    spectrogram.add_argument("-o", "--output", required=True, metavar="OUT.png")
    spectrogram.add_argument("--size", type=_image_size, default=(96, 128), metavar="HxW",
                             help="image height x width (default 96x128)")
    spectrogram.set_defaults(handler=_spectrogram)

    prepare = commands.add_parser(
        "prepare", help="write a resized copy of a TFDS image dataset for fast pre-training",
        description="Decode and resize every image of a TFDS dataset (or 'bundled_photos', or a "
        "folder of images) once, writing a new TFDS dataset NAME_HxW into --out-dir. Resumable: "
        "rerun after an interruption and finished shards are kept. Multi-process: start P "
        "processes with --process-index 0..P-1 --process-count P; process 0 finishes last.",
    )
    prepare.add_argument("--dataset", default="imagenet2012",
                         help="TFDS name, 'bundled_photos' or a folder (default imagenet2012)")
    prepare.add_argument("--data-dir", default=None, metavar="IN",
                         help="TFDS data dir of the source (imagenet2012 archives go in "
                         "IN/downloads/manual)")
    prepare.add_argument("--out-dir", required=True, metavar="OUT")
    prepare.add_argument("--size", type=_image_size, default=(96, 128), metavar="HxW")
    prepare.add_argument("--examples-per-shard", type=int, default=2048, metavar="N")
    prepare.add_argument("--process-index", type=int, default=0, metavar="I")
    prepare.add_argument("--process-count", type=int, default=1, metavar="P")
    prepare.set_defaults(handler=_prepare)

    grid = commands.add_parser(
        "augment-grid", help="draw images beside random views of an augmentation spec",
        description="Draw each input (photos and/or accelerometer windows rendered as "
        "spectrograms) beside several random views of SPEC, to see what the network trains on.",
    )
    grid.add_argument("--spec", default="translate_x|permute_x|hue|jitter",
                      help="ops joined by '|': translate_x, permute_x, hue, jitter, mocov2, all")
    grid.add_argument("-o", "--output", required=True, metavar="GRID.png")
    grid.add_argument("--image", action="append", default=[], metavar="PHOTO",
                      help="a photo (repeatable; default: bundled photos grace_hopper, chelsea)")
    grid.add_argument("--window", action="append", default=[], metavar="CSV",
                      help="an accelerometer window, x,y,z columns (repeatable)")
    grid.add_argument("--sample-rate", type=float, default=20.0, metavar="HZ",
                      help="for --window (default 20)")
    grid.add_argument("--nfft", type=int, default=128, metavar="N", help="for --window")
    grid.add_argument("--noverlap", type=int, default=116, metavar="M", help="for --window")
    grid.add_argument("--views", type=int, default=6)
    grid.add_argument("--seed", type=int, default=0)
    grid.set_defaults(handler=_augment_grid)

    pretrain = commands.add_parser(
        "pretrain", help="contrastive pre-training (MoCo or SimCLR) with Orbax checkpoints",
        description="Pre-train an image encoder. Override any config value with "
        "--config.KEY=VALUE (e.g. --config.batch_size=512). Rerunning with the same --workdir "
        "resumes from its latest checkpoint; SIGTERM saves and exits 0.",
    )
    pretrain.add_argument("--config", required=True, metavar="CONFIG.py",
                          help="a bundled recipe name (img2imu_paper, demo, ...) or an ml_collections recipe file")
    pretrain.add_argument("--workdir", required=True, metavar="DIR")
    pretrain.add_argument("--distributed", action="store_true",
                          help="initialise jax.distributed from the environment (TPU VM, SLURM)")
    pretrain.add_argument("--coordinator", metavar="HOST:PORT",
                          help="explicit coordinator, for several processes on one machine")
    pretrain.add_argument("--num-processes", type=int, default=1)
    pretrain.add_argument("--process-id", type=int, default=0)
    pretrain.add_argument("--local-device-ids", type=_device_ids, default=None, metavar="0,1,...",
                          help="the devices this process drives (with --distributed or "
                          "--coordinator); under SLURM JAX otherwise takes only the GPU of "
                          "the local rank")
    pretrain.add_argument("--allow-config-change", action="store_true",
                          help="resume a workdir whose run.json records another config "
                          "(the differing keys are logged)")
    pretrain.set_defaults(handler=_pretrain)

    compile_parser = commands.add_parser(
        "compile", help="compile the pre-training step for a TPU slice on this host (needs libtpu)",
        description="Compile the exact step `img2imu pretrain` would run for any TPU topology "
        "(multi-host and multislice too) with XLA's TPU compiler, nothing allocated, and print "
        "its HBM per chip against capacity (exit 1 if it does not fit), GFLOP and GB per image, "
        "the compiler's estimated step time and images/s per chip, and its collectives. "
        "Override config values with --config.KEY=VALUE. Needs the tpu extra.",
    )
    compile_parser.add_argument("--config", required=True, metavar="CONFIG.py",
                                help="a bundled recipe name (img2imu_paper, ...) or a recipe file")
    compile_parser.add_argument("--topology", required=True, metavar="CHIP:SHAPE",
                                help="e.g. v5e:2x2, v5p:4x4x4, v6e:4x4")
    compile_parser.add_argument("--slices", type=int, default=1,
                                help="slices joined over the data-centre network (multislice)")
    compile_parser.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    compile_parser.set_defaults(handler=_compile)

    finetune = commands.add_parser(
        "finetune", help="the paper's downstream protocol (linear eval, full fine-tune)",
        description="The paper's few-shot protocol with subject-wise folds: linear evaluation "
        "and/or full fine-tuning (--config.modes), of the encoder in --config.pretrained (a "
        "pre-training checkpoints/ directory) and of a random one. Writes results.json, "
        "results.md, f1_vs_shots.png and models/<encoder>-<mode>/ into --workdir.",
    )
    finetune.add_argument("--config", required=True, metavar="CONFIG.py",
                          help="a bundled recipe name (e.g. finetune_basicmotions) or a recipe file")
    finetune.add_argument("--workdir", required=True, metavar="DIR")
    finetune.set_defaults(handler=_finetune)

    predict = commands.add_parser(
        "predict", help="classify every window of a raw accelerometer CSV",
        description="Cut a recording (CSV of x, y, z columns, optional header) into the "
        "windows a saved classifier was trained on and print start_s,end_s,label,probability "
        "per window.",
    )
    predict.add_argument("input", metavar="INPUT.csv")
    predict.add_argument("--checkpoint", required=True, metavar="DIR",
                         help="a saved classifier: FINETUNE_WORKDIR/models/<encoder>-<mode>")
    predict.add_argument("--sample-rate", type=float, default=None, metavar="HZ",
                         help="of INPUT.csv (default: from its timestamp column, else the "
                         "training dataset's rate)")
    predict.add_argument("--columns", default=None, metavar="X,Y,Z[,TIME]",
                         help="which columns: header names or 1-based numbers (default: by "
                         "header name x, y, z, time, or the only three)")
    predict.add_argument("-o", "--output", default=None, metavar="OUT.csv",
                         help="write the predictions here instead of printing them")
    predict.set_defaults(handler=_predict)

    table = commands.add_parser(
        "table", help="combine finetune results of several datasets into the paper's Table II",
        description="Rows: encoders; columns: datasets (and their average); macro-F1 at "
        "--shots per class. Writes table_ii.md and table_ii.json into --out.",
    )
    table.add_argument("results", nargs="+", metavar="RESULTS",
                       help="finetune workdirs or their results.json files")
    table.add_argument("--out", required=True, metavar="DIR")
    table.add_argument("--shots", type=int, default=10)
    table.add_argument("--mode", choices=("linear", "finetune"), default="linear")
    table.set_defaults(handler=_table)

    export = commands.add_parser(
        "export", help="a checkpoint for PyTorch (torchvision), phones (LiteRT) or XLA "
        "(StableHLO)",
        description="--to torchvision: a saved classifier (FINETUNE_WORKDIR/models/<name>) or a "
        "pre-training WORKDIR as a torchvision ResNet state_dict (OUT.safetensors and OUT.pt). "
        "--to litert / stablehlo: a saved classifier as one program from a raw accelerometer "
        "window [batch, time, 3] to class probabilities (OUT.tflite / OUT.jax_export), its "
        "description beside it (OUT.*.json).",
    )
    export.add_argument("source", metavar="SOURCE",
                        help="a saved classifier directory or a pre-training workdir")
    export.add_argument("--to", required=True, choices=("torchvision", "litert", "stablehlo"))
    export.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="output path without suffix")
    export.add_argument("--head", action="store_true",
                        help="torchvision, pre-training: also the projection head, as MoCo's "
                        "fc = nn.Sequential(Linear, ReLU, Linear)")
    export.add_argument("--int8", action="store_true",
                        help="litert: full-integer post-training quantisation, calibrated on the "
                        "saved fold's training windows; prints the macro-F1 change on its test "
                        "windows")
    export.add_argument("--data-dir", default=None, metavar="DIR",
                        help="with --int8: where the classifier's dataset is now, if it moved")
    export.set_defaults(handler=_export)

    demo_parser = commands.add_parser(
        "demo", help="the main job end to end on bundled real data (what `make demo` runs)",
        description="Pre-train twice on the bundled photos (sensor-aware vs MoCo-v2 "
        "augmentations), evaluate both encoders and a random one on BasicMotions with the "
        "paper's few-shot protocol, and write WORKDIR/report/report.md. Rerunning with the "
        "same --workdir reuses finished stages.",
    )
    demo_parser.add_argument("--workdir", default="demo_out", help="where outputs go")
    demo_parser.add_argument("--quick", action="store_true",
                             help="seconds instead of minutes; the numbers mean nothing")
    demo_parser.add_argument("--configs", default=None, metavar="DIR",
                             help="folder holding demo.py and demo_finetune.py (default: the "
                             "bundled recipes, configs/ in a checkout)")
    demo_parser.add_argument("--reference", default=None, metavar="JOGGING.csv",
                             help="the paper authors' sample window, their jogging_combined.png "
                             "beside it: the report compares our rendering with theirs")
    demo_parser.set_defaults(handler=_demo)
    for command_parser in (parser, *commands.choices.values()):
        _add_output_flags(command_parser)
    return parser


def _add_output_flags(parser: argparse.ArgumentParser) -> None:
    """-v/-q before or after the command; SUPPRESS keeps a subcommand's parse from
    overwriting a count given before it."""
    parser.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                        help="more library output (repeatable)")
    parser.add_argument("-q", "--quiet", action="count", default=argparse.SUPPRESS,
                        help="fewer of img2imu's log messages (repeatable)")


def _demo(args: argparse.Namespace) -> None:
    from img2imu_jax import demo  # pulls in the trainer and the fine-tune loop

    demo.run(args.workdir, quick=args.quick, configs=args.configs or demo.CONFIGS,
             reference_window=args.reference)


def _spectrogram(args: argparse.Namespace) -> None:
    from img2imu_jax import render  # JAX loads only when a command needs it: --help stays fast

    image, recording = render.render_csv(args.input, args.output, sample_rate=args.sample_rate,
                                     nfft=args.nfft, noverlap=args.noverlap,
                                     image_size=args.size, columns=args.columns)
    height, width = args.size
    print(f"wrote {args.output} ({width}x{height} RGB; {len(recording.samples)} samples at "
          f"{recording.sample_rate:g} Hz)")
    if args.axes:
        from img2imu_jax.reports import plot_spectrogram_axes

        plot_spectrogram_axes(recording.samples, image, args.axes,
                              sample_rate=recording.sample_rate, nfft=args.nfft,
                              noverlap=args.noverlap)
        print(f"wrote {args.axes} (x, y, z panels in Hz and seconds)")


def _augment_grid(args: argparse.Namespace) -> None:
    from img2imu_jax import augment_grid
    from img2imu_jax.images.sources import bundled_photo_paths

    photos = args.image
    if not photos and not args.window:
        photos = [p for p in bundled_photo_paths() if p.stem in ("grace_hopper", "chelsea")]
    inputs = augment_grid.grid_inputs(photos, args.window, sample_rate=args.sample_rate,
                                      nfft=args.nfft, noverlap=args.noverlap)
    labels = [f"photo {os.path.basename(p)}" for p in photos] + [
        f"window {os.path.basename(w)}" for w in args.window]
    augment_grid.plot_augment_grid(inputs, labels, args.spec, args.output, views=args.views,
                                   seed=args.seed)
    print(f"wrote {args.output}: {len(inputs)} input(s) x {args.views} views of {args.spec!r}")


def _pretrain(args: argparse.Namespace) -> None:
    from img2imu_jax.config import load_config  # the trainer's imports are heavy; load on use

    config = load_config(args.config, args.overrides)  # every config error before any compile
    from img2imu_jax.images.sources import check_source  # TensorFlow loads only when needed
    from img2imu_jax.methods import method_class

    if method_class(config.method).input == "images":  # sensor corpora: checked by validate
        check_source(config.data.dataset, config.data.data_dir or None)
    peers = None
    if args.coordinator or args.distributed:
        from img2imu_jax import multihost
        from img2imu_jax.checkpoint import CHECKPOINTS

        explicit = bool(args.coordinator)  # else JAX finds them (TPU VMs, SLURM)
        peers = multihost.initialize(
            args.coordinator, num_processes=args.num_processes if explicit else None,
            process_id=args.process_id if explicit else None,
            local_device_ids=args.local_device_ids, peer_timeout_s=config.peer_timeout_s,
            checkpoint_dir=user_path(args.workdir) / CHECKPOINTS)
    elif args.local_device_ids is not None:
        raise ValueError("--local-device-ids needs --distributed or --coordinator")
    import jax

    from img2imu_jax.pretrain import train

    try:
        metrics = train(config, args.workdir, allow_config_change=args.allow_config_change)
    except jax.errors.JaxRuntimeError:  # on several processes, mostly a collective that lost a peer
        if peers is not None:
            peers.await_verdict()
        raise
    if peers is not None:
        peers.finish()
    print(f"done: {args.workdir} (last metrics: " + ", ".join(
        f"{k} {v:.4g}" for k, v in metrics.items()) + ")")


def _compile(args: argparse.Namespace) -> None:
    from img2imu_jax.config import load_config
    from img2imu_jax.tpu_compile import run

    config = load_config(args.config, args.overrides)
    if args.slices < 1:
        raise ValueError(f"--slices must be >= 1; got {args.slices}")
    run(config, args.topology, slices=args.slices,
        json_path=user_path(args.json, what="--json") if args.json else None)


def _finetune(args: argparse.Namespace) -> None:
    from img2imu_jax.config import load_config
    from img2imu_jax.finetune.config import validate_finetune

    config = load_config(args.config, args.overrides, checks=validate_finetune)
    from img2imu_jax import compile_cache
    from img2imu_jax.finetune.results import run

    compile_cache.enable(config.compilation_cache_dir)
    record = run(config, args.workdir)
    print((user_path(args.workdir) / "results.md").read_text(), end="")
    print(f"wrote {args.workdir}/results.json, results.md, f1_vs_shots.png "
          f"({record['windows']} windows of {record['dataset']})")
    for name, path in record["models"].items():
        print(f"saved classifier ({name}): {path}")


def _predict(args: argparse.Namespace) -> None:
    from img2imu_jax.predict import predict_csv, summary, write_csv

    predictions, meta = predict_csv(args.checkpoint, args.input, sample_rate=args.sample_rate,
                                    columns=args.columns)
    text = write_csv(predictions, args.output)
    if args.output is None:
        print(text, end="")
    else:
        print(f"wrote {args.output}")
    print(f"{summary(predictions)} ({meta['dataset']} classifier, {meta['encoder']}, "
          f"{meta['mode']})", file=sys.stderr)


def _export(args: argparse.Namespace) -> None:
    from img2imu_jax import export

    if args.to == "torchvision":
        paths, depth = export.export_torchvision(args.source, args.output, head=args.head)
        print(f"wrote {', '.join(map(str, paths))}: load with "
              f"torchvision.models.resnet{depth}(num_classes=...).load_state_dict(...)")
        return
    if args.int8 and args.to != "litert":
        raise ValueError("--int8 is for --to litert")
    if args.to == "litert":
        path = export.export_litert(args.source, args.output + ".tflite", int8=args.int8,
                                    data_dir=args.data_dir)
    else:
        path = export.export_stablehlo(args.source, args.output + ".jax_export")
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB) and {path}.json")
    if args.int8:
        found = export.read_description(path)["int8"]
        print(f"int8: macro-F1 on the saved fold's {found['test_windows']} test windows "
              f"{100 * found['macro_f1_float']:.1f} % (float) -> "
              f"{100 * found['macro_f1_int8']:.1f} % (int8); same class on "
              f"{100 * found['agreement']:.1f} % of them")


def _table(args: argparse.Namespace) -> None:
    from img2imu_jax.reports import table_ii_markdown, write_table_ii

    table = write_table_ii(args.results, args.out, shots=args.shots, mode=args.mode)
    print(table_ii_markdown(table), end="")
    print(f"wrote {args.out}/table_ii.md, table_ii.json")


def _prepare(args: argparse.Namespace) -> None:
    from img2imu_jax.images.prepare import prepare  # TensorFlow loads only when needed
    from img2imu_jax.images.sources import check_source

    check_source(args.dataset, args.data_dir)
    out = prepare(args.dataset, args.data_dir, args.out_dir, image_size=args.size,
                  examples_per_shard=args.examples_per_shard, process_index=args.process_index,
                  process_count=args.process_count)
    print(f"prepared copy: {out} (read it with --dataset {out.parent.name} "
          f"--data-dir {out.parent.parent})")


def _device_ids(text: str) -> list[int]:
    try:
        ids = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected device ids such as 0,1,2,3; got {text!r}") \
            from None
    if min(ids) < 0 or len(set(ids)) != len(ids):
        raise argparse.ArgumentTypeError(f"device ids must be distinct and >= 0; got {text!r}")
    return ids


def _image_size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW such as 96x128; got {text!r}") from None
    if height < 1 or width < 1:
        raise argparse.ArgumentTypeError(f"height and width must be positive; got {text!r}")
    return height, width


if __name__ == "__main__":
    sys.exit(main())
