"""The `img2imu` command line: what a person typing it sees."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from img2imu_jax import cli


@pytest.fixture
def window_csv(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "walk.csv"
    np.savetxt(path, rng.normal(size=(300, 3)), delimiter=",", header="x,y,z", comments="")
    return path


def test_spectrogram_writes_a_128x96_png(window_csv, tmp_path, capsys):
    out = tmp_path / "out" / "walk.png"
    argv = ["spectrogram", str(window_csv), "--sample-rate", "50", "--nfft", "64",
            "--noverlap", "56", "-o", str(out)]
    assert cli.main(argv) == 0
    with Image.open(out) as image:
        assert image.size == (128, 96) and image.mode == "RGB"
    assert str(out) in capsys.readouterr().out

    axes = tmp_path / "axes.png"
    assert cli.main(argv + ["--size", "48x64", "--axes", str(axes)]) == 0
    with Image.open(out) as image:
        assert image.size == (64, 48)
    assert f"wrote {axes}" in capsys.readouterr().out and axes.stat().st_size > 10_000


@pytest.mark.parametrize(
    "content, extra, message",
    [
        ("1,2,3\n4,five,6\n", [], "walk.csv line 2: column 2 (y) is 'five'"),
        (None, ["--noverlap", "64"], "noverlap must be in [0, nfft)"),
        (None, ["--sample-rate", "0"], "sample rate must be > 0 Hz; got 0.0"),
        (None, ["--sample-rate", "-5"], "sample rate must be > 0 Hz; got -5.0"),
        (None, ["--nfft", "0"], "nfft must be at least 2; got 0"),
        ("x,y,z\n1,2,3\n4,5,6\n", ["--sample-rate", None], "has no timestamp column"),
        ("time,acc_x,acc_y\n0,1,2\n", [], "cannot tell which columns are x, y, z"),
    ],
)
def test_errors_are_one_readable_line(window_csv, tmp_path, capsys, content, extra, message):
    if content is not None:
        window_csv.write_text(content)
    argv = ["spectrogram", str(window_csv), "--sample-rate", "50", "--nfft", "64",
            "--noverlap", "32", "-o", str(tmp_path / "x.png")]
    for flag, value in zip(extra[::2], extra[1::2]):
        at = argv.index(flag) if flag in argv else None
        if at is not None:
            del argv[at:at + 2]
        if value is not None:
            argv += [flag, value]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.png").exists()


def test_version_matches_the_package_metadata(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"img2imu {version('img2imu-jax')}"


def test_missing_file_and_bad_size(tmp_path, capsys):
    argv = ["spectrogram", str(tmp_path / "nope.csv"), "--sample-rate", "50", "--nfft", "64",
            "--noverlap", "32", "-o", str(tmp_path / "x.png")]
    assert cli.main(argv) == 1
    assert "nope.csv" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv + ["--size", "96by128"])
    assert exit_info.value.code == 2
    assert "expected HxW" in capsys.readouterr().err


def test_console_script_help():
    script = Path(sys.executable).with_name("img2imu")
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True)
    assert "spectrogram" in result.stdout and "demo" in result.stdout
    result = subprocess.run([str(script), "spectrogram", "--help"], capture_output=True,
                            text=True, check=True)
    assert "--sample-rate" in result.stdout and "--size" in result.stdout


def test_augment_grid_on_a_photo_and_a_spectrogram(window_csv, tmp_path, capsys):
    out = tmp_path / "grid.png"
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (60, 80, 3), np.uint8)).save(photo)
    argv = ["augment-grid", "--spec", "translate_x|hue", "--image", str(photo), "--window",
            str(window_csv), "--sample-rate", "50", "--nfft", "64", "--noverlap", "56",
            "--views", "3", "-o", str(out)]
    assert cli.main(argv) == 0
    with Image.open(out) as grid:  # a labelled figure: the tiles at 1.6 in per 96 rows, 120 dpi
        assert grid.size[0] > 4 * 128 and grid.size[0] > 2 * grid.size[1]
    assert "2 input(s) x 3 views" in capsys.readouterr().out
    assert cli.main(["augment-grid", "--spec", "hue|blur", "-o", str(out)]) == 1
    assert "unknown augmentation 'blur'" in capsys.readouterr().err
