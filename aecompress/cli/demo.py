"""``aecompress demo``: the whole pipeline on the sample photos."""

from __future__ import annotations

import time
from pathlib import Path

import click

from .app import CliError, main, stderr, warning_line

SAMPLES = Path(__file__).parent.parent / "samples"  # the photo bundled with the package


@main.command()
@click.option("--train", "force_train", is_flag=True, help="Train a tiny model on sample_data/ even when a default model is installed.")
@click.option("--steps", type=click.IntRange(1), default=150, show_default=True, help="Training steps when training.")
@click.option("--keep", metavar="DIR", help="Keep the demo's files in DIR (default: a temporary folder, removed).")
@click.option("-f", "--force", is_flag=True, help="Overwrite the files of an earlier demo in --keep DIR.")
def demo(force_train, steps, keep, force):
    """Show the whole pipeline on the sample photos: (train), encode, decode, report.

    Uses the shipped default model; without one (or with --train) it first trains
    a tiny model on ./sample_data (or the photo bundled with the package).
    """
    import shutil

    from ..codec import default_model_path, load_model
    from ..images import find_images

    images = find_images(Path("sample_data")) if Path("sample_data").is_dir() else []
    images = images or find_images(SAMPLES)
    source = images[0]
    training = force_train or not default_model_path().exists()
    names = ["demo.safetensors", "demo.ckpt"] if training else []
    names += [source.stem + ".aec", source.stem + ".decoded.png"]
    work = _demo_folder(keep, names, force)
    try:
        model = _train_tiny(images, steps, work) if training else load_model()
        _show_pipeline(model, source, work, keep)
        if training:
            click.echo(f"note      the demo's tiny model trained for {steps} steps, a few seconds: it is meant to be poor, far below JPEG;")
            click.echo("          the shipped default model, or a real run (train … --time-budget 1h), shows what the codec does")
        click.echo(f"files kept in {work}" if keep else "files     in a temporary folder, now removed (use --keep DIR to keep them)")
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def _train_tiny(images: list[Path], steps: int, work: Path):
    """The demo's own model: a tiny one, trained for a few seconds on the sample photos."""
    from ..codec import load_model
    from ..training.config import TINY_RECIPE, TrainConfig
    from ..training.loop import train as run_training

    model_path = work / "demo.safetensors"
    stderr(f"training a tiny model on {len(images)} sample photo(s) for {steps} steps…")
    cfg = TrainConfig(data=str(images[0].parent), output=str(model_path), steps=steps, checkpoint=str(work / "demo.ckpt"), **TINY_RECIPE)
    run_training(cfg, log=stderr, warn=lambda message: stderr(warning_line(message)))
    return load_model(model_path)


def _show_pipeline(model, source: Path, work: Path, keep: str | None) -> None:
    """Encode and decode ``source`` through files in ``work``, and compare with JPEG at the same size."""
    from ..codec import Codec, default_model_path, default_quality
    from ..images import encode_picture, read_image
    from ..metrics import bpp, psnr
    from ..outputs import atomic_write

    codec = Codec(model)
    data = source.read_bytes()
    picture = read_image(data, str(source))
    q = default_quality(model)
    t = time.perf_counter()
    encoded = codec.encode(picture, q)
    t_enc = time.perf_counter() - t
    aec = work / (source.stem + ".aec")
    atomic_write(aec, encoded.data)
    t = time.perf_counter()
    decoded = codec.decode(aec.read_bytes())
    t_dec = time.perf_counter() - t
    png = work / (source.stem + ".decoded.png")
    atomic_write(png, encode_picture(decoded.picture, "PNG")[0])
    n = len(encoded.data)
    ours = psnr(picture.color, decoded.picture.color)

    def shown(path) -> str:  # a temporary folder's path means nothing once it is removed
        return str(path) if keep else Path(path).name

    click.echo(
        f"model     {model.model_id} ({'default' if model.path == str(default_model_path()) else shown(model.path)}), quality {q} of {model.qualities}"
    )
    click.echo(
        f"encode    {source} -> {shown(aec)}: {n:,} bytes, {bpp(n, picture.width, picture.height):.3f} bpp, "
        f"ratio {picture.width * picture.height * 3 / n:.1f}:1, PSNR {ours:.2f} dB, {t_enc:.2f} s"
    )
    identical = bool((decoded.picture.color == encoded.reconstruction.color).all())
    click.echo(
        f"decode    {shown(aec)} -> {shown(png)}: {decoded.picture.width}x{decoded.picture.height}, {t_dec:.2f} s, "
        f"identical to the encoder's reconstruction: {identical}"
    )
    click.echo(_jpeg_line(source, picture, n))
    if not identical:  # the smoke test must be able to fail on the one thing it checks
        raise CliError("the decoded picture differs from the encoder's reconstruction (please report it: aecompress --debug demo)")


def _jpeg_line(source: Path, picture, n: int) -> str:
    """JPEG at about ``n`` bytes, for comparison."""
    import io

    import numpy as np
    from PIL import Image

    from ..baselines import encode_at_size
    from ..metrics import psnr

    with Image.open(source) as im:
        jpeg, jpeg_quality = encode_at_size(im.convert("RGB"), "jpeg", n)
        with Image.open(io.BytesIO(jpeg)) as jim:
            jpsnr = psnr(picture.color, np.asarray(jim.convert("RGB")))
    return f"JPEG      same image at about the same size (quality {jpeg_quality}): {len(jpeg):,} bytes, PSNR {jpsnr:.2f} dB"


def _demo_folder(keep: str | None, names: list[str], force: bool) -> Path:
    """--keep DIR, checked like every output (its files exist only with -f); else a temporary folder."""
    import tempfile

    from ..outputs import OutputError, check_output_path, prepare_output_dir

    if not keep:
        return Path(tempfile.mkdtemp(prefix="aecompress-demo-"))
    try:
        prepare_output_dir(keep)
        for name in names:
            check_output_path(Path(keep) / name, force)
    except OutputError as exc:
        raise CliError(str(exc)) from exc
    return Path(keep)
