"""`img2imu`: the command line. Parses and dispatches; the work lives in the modules it calls."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from img2imu_jax import demo, render


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        args.handler(args)
    except (ValueError, OSError) as error:
        print(f"img2imu {args.command}: error: {error}", file=sys.stderr)
        return 1
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="img2imu",
        description="IMG2IMU in JAX: image pre-training for few-shot IMU classification.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    spectrogram = commands.add_parser(
        "spectrogram",
        help="render an accelerometer window (CSV of x, y, z) as an IMG2IMU spectrogram PNG",
        description="Render one accelerometer window as the RGB spectrogram image IMG2IMU feeds "
        "to its image network (x, y, z -> R, G, B; low frequencies at the bottom).",
    )
    spectrogram.add_argument("input", metavar="INPUT.csv", help="3 numeric columns, optional header")
    spectrogram.add_argument("--sample-rate", type=float, required=True, metavar="HZ")
    spectrogram.add_argument("--nfft", type=int, required=True, metavar="N", help="STFT length")
    spectrogram.add_argument("--noverlap", type=int, required=True, metavar="M",
                             help="samples shared by consecutive STFT frames")
    spectrogram.add_argument("-o", "--output", required=True, metavar="OUT.png")
    spectrogram.add_argument("--size", type=_image_size, default=(96, 128), metavar="HxW",
                             help="image height x width (default 96x128)")
    spectrogram.set_defaults(handler=_spectrogram)

    demo_parser = commands.add_parser(
        "demo", help="run the main job on the embedded default",
        description="Render the paper authors' reference window and compare it with theirs.",
    )
    demo_parser.add_argument("--workdir", default="demo_out", help="where outputs go")
    demo_parser.add_argument("--input", default=None, metavar="CSV",
                             help="window to render instead of the reference one")
    demo_parser.set_defaults(handler=lambda args: demo.run(args.workdir, args.input))
    return parser


def _spectrogram(args: argparse.Namespace) -> None:
    render.render_csv(args.input, args.output, sample_rate=args.sample_rate, nfft=args.nfft,
                      noverlap=args.noverlap, image_size=args.size)
    height, width = args.size
    print(f"wrote {args.output} ({width}x{height} RGB)")


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
