"""``aecompress info``: what a .aec file, a model file or a training checkpoint holds."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from .. import __version__, store
from ..bitstream import MAGIC
from .app import CliError, main
from .io import display, fail_input, load_model, read_input


@main.command()
@click.argument("file", metavar="FILE")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info(file, as_json):
    """Describe a .aec file, a model file or a training checkpoint.

    FILE 'default' is the shipped model; '-' reads a .aec file from stdin.
    """
    record, lines = _describe(file)
    click.echo(json.dumps(record) if as_json else "\n".join(lines))


def _describe(file: str) -> tuple[dict, list[str]]:
    """What ``info`` prints about ``file``, found from its content rather than its name."""
    from ..sniff import describe as kind_of
    from ..sniff import head, training_checkpoint

    if file == "default" or (store.is_model_id(file) and not Path(file).exists()):
        return _info_model(file)
    if file != "-":
        path = Path(file)
        if path.is_dir():
            fail_input(file, "is a directory")
        if not path.exists():
            fail_input(file, "no such file")
        first = head(path)
        if first[:4] != MAGIC:
            state = training_checkpoint(path)
            if state is not None:
                return _info_checkpoint(file, state)
            if kind_of(first) is None:
                return _info_model(file)  # safetensors has no magic bytes: let the model reader judge
    data = read_input(file)
    if data[:4] == MAGIC:
        return _info_aec(file, data)
    raise CliError(_foreign_file(display(file), kind_of(data[:64]) or "not a known kind of file"))


def _foreign_file(name: str, kind: str) -> str:
    """One line for a file that is neither a .aec file nor a model: what it is, and what to do with it."""
    from ..sniff import is_image

    if kind == "an empty file":
        return f"{name}: empty file"
    hint = f" (compress it with `aecompress encode {'-' if name == '<stdin>' else name}`)" if is_image(kind) else ""
    return f"{name}: {kind}, not an aecompress file or model{hint}"


def _info_aec(file: str, data: bytes) -> tuple[dict, list[str]]:
    from .. import bitstream
    from ..quality import format_quality, quality_value

    try:
        header, payload = bitstream.unpack(data)
    except bitstream.ContainerError as exc:
        raise CliError(f"{display(file)}: {exc}") from exc
    record = {
        "kind": "aec",
        "file": display(file),
        "format_version": header.version,
        "model_id": header.model_id,
        "width": header.width,
        "height": header.height,
        "channels": header.channels,
        "quality": quality_value(header.hundredths),
        "alpha": bool(header.flags & bitstream.FLAG_ALPHA),
        "bytes": len(data),
        "payload_bytes": len(payload),
        "overhead_bytes": header.overhead,
        "bpp": round(8 * len(data) / header.pixels, 5),
    }
    lines = [
        f"{record['file']}: aecompress image, format version {record['format_version']}",
        f"  size        {header.width}x{header.height}, {header.channels} channel(s){' with lossless alpha' if record['alpha'] else ''}",
        f"  quality     {format_quality(header.hundredths)}"
        + (
            f" (level {header.quality}'s ẑ tables, gains {header.fraction}% of the way to level {header.quality + 1})"
            if header.fraction
            else ""
        ),
        f"  model id    {header.model_id}",
        f"  bytes       {len(data):,} ({len(payload):,} payload + {header.overhead} container), {record['bpp']:.3f} bpp",
    ]
    return record, lines


def _info_model(file: str) -> tuple[dict, list[str]]:
    from ..coders import coder_class

    model = load_model(file)
    preset = model.preset
    params = model.parameter_count
    training = model.metadata.get("training") or {}
    record = {
        "kind": "model",
        "file": model.path,
        "model_id": model.model_id,
        "preset": preset.name,
        "N": preset.N,
        "M": preset.M,
        "entropy": preset.entropy,
        "parameters": params,
        "qualities": model.qualities,
        "lambdas": list(preset.lambdas),
        "training": training,
        "bytes": os.path.getsize(model.path),
        "release": store.release_of(model.model_id),
        "default": model.model_id == store.default_id(),
    }
    lines = [
        f"{model.path}: aecompress model {model.model_id}",
        f"  architecture  preset {preset.name}: N={preset.N}, M={preset.M}, "
        + coder_class(preset.entropy).describe(preset)
        + f", {params:,} parameters, {record['bytes'] / 1e6:.1f} MB file",
        f"  qualities     1–{model.qualities}, λ = {', '.join(f'{v:g}' for v in preset.lambdas)}",
    ]
    if record["release"]:
        default = f"; the default of this aecompress {__version__}" if record["default"] else ""
        lines.append(f"  release       shipped as the default of aecompress {record['release']}{default}")
    if training:
        shown = {k: v for k, v in training.items() if k not in ("stages", "lambdas", "held_out") and v not in (None, False, "")}
        lines.append("  training      " + ", ".join(f"{k} {v}" for k, v in shown.items()))
        measured = _measured_line(training.get("held_out"))
        if measured:
            lines.append(measured)
        stages = training.get("stages") or []
        if len(stages) > 1:
            lines.append(f"  stages        {len(stages)} (the model was trained in stages, each continuing the last):")
            for i, stage in enumerate(stages, 1):
                lines.append("    " + _stage_line(i, stage))
    return record, lines


def _measured_line(measured) -> str | None:
    """The training summary's measure of the finished model, as words: what it was coded on, at what cost and quality."""
    if not isinstance(measured, dict):
        return None
    try:
        images = int(measured.get("held_out_images") or 0)
        patches = f"{measured['patches']} patches of {measured['side']}²"
        result = f"q{measured['quality']:g}: {float(measured['bpp']):.3f} bpp, {float(measured['psnr']):.2f} dB"
        if measured.get("jpeg_psnr") is not None:
            result += f" (JPEG at that rate: {float(measured['jpeg_psnr']):.2f} dB)"
    except (KeyError, TypeError, ValueError):  # a summary of another shape: still one line, never a raw dict
        return "  measured      " + ", ".join(f"{k} {v}" for k, v in measured.items() if not isinstance(v, (dict, list)))
    if images:
        return f"  held out      {images} image{'s' if images != 1 else ''} not trained on, {patches}, {result}"
    return f"  measured      on training images (none held out), {patches}, {result}"


def _stage_line(number: int, stage: dict) -> str:
    """One stage of a model's training log: where, how long, on what."""
    hours = float(stage.get("seconds") or 0) / 3600
    pixels = (
        stage.get("pixels") or int(stage.get("steps") or 0) * int(stage.get("batch_size") or 0) * int(stage.get("patch_size") or 0) ** 2
    )
    parts = [
        f"{number}. {stage.get('steps', '?'):,} steps" if isinstance(stage.get("steps"), int) else f"{number}. ? steps",
        f"{hours:.2f} h",
        f"{pixels:.2e} px",
        f"data {stage.get('data', '?')}",
        f"{stage.get('precision', '?')}",
        f"lr {stage.get('lr', '?')}",
    ]
    if stage.get("cpu"):
        processes = int(stage.get("processes") or 1)
        ranks = f" ×{processes} processes" if processes > 1 else ""
        parts.append(f"{stage['cpu']}{ranks}" + (f" ×{stage['threads']} thread(s)" if stage.get("threads") else ""))
    if stage.get("init"):
        parts.append(f"init {stage['init']}")
    return ", ".join(parts)


def _info_checkpoint(file: str, state: dict) -> tuple[dict, list[str]]:
    """A training checkpoint is not a model, but it is ours: say where its run stands and how to go on."""
    config = state.get("config") or {}
    record = {
        "kind": "checkpoint",
        "file": file,
        "step": int(state["step"]),
        "seconds": round(float(state.get("elapsed", 0.0)), 1),
        "preset": config.get("preset"),
        "data": config.get("data"),
        "output": config.get("output"),
        "steps": config.get("steps"),
        "time_budget": config.get("time_budget"),
        "init": config.get("init"),
    }
    data, output = record["data"] or "DIR", record["output"] or "MODEL"
    lines = [
        f"{file}: aecompress training checkpoint (not a model file): step {record['step']}, {record['seconds']} s trained",
        f"  run         preset {record['preset']}, data {data}, model {output}",
        f"  continue    aecompress train {data} -o {output} --resume {file}",
    ]
    return record, lines
