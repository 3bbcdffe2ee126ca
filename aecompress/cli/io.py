"""Inputs and outputs shared by the commands: reading inputs and models, where outputs go."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import click

from .app import CliError, Failure, fail_line, note_line, stderr

NO_IMAGES = "no images found (searched recursively for PNG, JPEG, WebP, TIFF, BMP, GIF…)"


def no_images(folder) -> str:
    """The one line for a folder without images (`train`, `eval`, `score`)."""
    return f"{folder}: {NO_IMAGES}"


def display(name: str) -> str:
    return "<stdin>" if name == "-" else name


def flush_subnormals() -> None:
    """Subnormal floats cost ~100x on x86: a model whose GDN cross terms decayed through them
    encoded 3.9x slower (1.36 s against 0.35 s, same bytes and PSNR).  The integer coding path has none;
    ONNX Runtime flushes them itself.  Set where a model is loaded; torch gets it when (if) it loads.
    A bad AECOMPRESS_ENGINE is said here, before any work."""
    from ..engine import chosen, configure

    configure(flush_subnormals=True)
    try:
        chosen()
    except ValueError as exc:
        raise CliError(str(exc)) from exc


def load_model(model: str | None):
    """The model of -m (None: the shipped one); a file that is not one fails the command in one line."""
    from ..codec import load_model as load
    from ..modelfile import ModelFileError

    flush_subnormals()
    try:
        return load(model)
    except ModelFileError as exc:
        raise CliError(not_a_model_reason(model, str(exc))) from exc


def not_a_model_reason(path: str | None, reason: str) -> str:
    """A model-loading error; for a file of another kind (an image, a checkpoint…), say what it is instead."""
    from ..sniff import describe, head, training_checkpoint

    if path in (None, "default") or not Path(path).is_file():
        return reason
    if training_checkpoint(path) is not None:
        return f"{path}: a training checkpoint, not a model file (finish its run with `aecompress train DIR -o MODEL --resume {path}`)"
    kind = describe(head(path))
    return f"{path}: {kind}, not an aecompress model file" if kind else reason


def fail_input(name: str, reason: str) -> NoReturn:
    """A command of one input (`eval DIR`) stops on it in the words a batch uses for a file: ``aecompress: NAME: REASON``, exit 1."""
    stderr(fail_line(name, reason))
    sys.exit(1)


def read_input(name: str) -> bytes:
    if name == "-":
        if sys.stdin.isatty():
            raise Failure("<stdin>", "refusing to read binary data from a terminal")
        return sys.stdin.buffer.read()
    path = Path(name)
    if path.is_dir():
        raise Failure(name, "is a directory")
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise Failure(name, "no such file") from None
    except OSError as exc:
        raise Failure(name, exc.strerror or str(exc)) from None


NO_AEC_FILES = "no .aec files found (searched recursively)"


def find_aec_files(root: Path) -> list[Path]:
    """The .aec files under ``root`` (recursively), in a stable order: what `decode DIR` decodes."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() == ".aec")


@dataclass
class Inputs:
    """The inputs of a command, with each folder replaced by the files found under it."""

    files: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # one line per folder where nothing was found
    relative: dict[str, Path] = field(default_factory=dict)  # a file found in a folder → its path under that folder
    folders: bool = False  # whether any argument was a folder

    @property
    def count(self) -> int:
        """What the summary counts: every file, and every folder that held none."""
        return len(self.files) + len(self.errors)


def expand_inputs(args: tuple[str, ...], aec: bool = False, skip_decoded: bool = False, quiet: bool = False) -> Inputs:
    """Files, with each folder replaced by the images under it (``aec``: the .aec files), found as `train` and `eval` find them.

    ``skip_decoded`` (encode) leaves out, in folders only, the images `decode` wrote beside
    its inputs (x.decoded.png), so that encoding a folder twice does not encode its own
    round trips; a note says how many, unless ``quiet``.  A file named as an argument is always kept.
    """
    from ..images import find_images

    inputs = Inputs()
    for arg in args:
        if arg == "-" or not Path(arg).is_dir():
            inputs.files.append(arg)
            continue
        inputs.folders = True
        found = find_aec_files(Path(arg)) if aec else find_images(Path(arg))
        if skip_decoded and not aec:
            found = _without_decoded(found, arg, quiet)
        if not found:
            inputs.errors.append(fail_line(arg, NO_AEC_FILES if aec else NO_IMAGES))
        for path in found:
            inputs.files.append(str(path))
            inputs.relative[str(path)] = path.relative_to(arg)
    return inputs


DECODED_STEM = ".decoded"  # `decode` writes x.aec to x.decoded.png (or .jpg, .webp…) beside it


def is_decoded_output(path: Path) -> bool:
    """Whether ``path`` is named as `decode` names the image it writes beside its input."""
    return path.stem.lower().endswith(DECODED_STEM) and len(path.stem) > len(DECODED_STEM)


def _without_decoded(found: list[Path], folder: str, quiet: bool) -> list[Path]:
    """``found`` less decode's outputs, with one note on stderr (unless ``quiet``) when any were left out."""
    kept = [path for path in found if not is_decoded_output(path)]
    skipped = len(found) - len(kept)
    if skipped and not quiet:
        outputs = "output" if skipped == 1 else "outputs"
        stderr(note_line(f"skipped {skipped} decoded {outputs} (*{DECODED_STEM}.*) in {folder}"))
    return kept


class Outputs:
    """Where each result goes, and the rules for writing it (see outputs.py).

    With ``-d DIR``, a file found in a folder argument keeps its place under that folder
    (``DCIM/100/x.jpg`` of ``DCIM`` → ``DIR/100/x.aec``; subfolders are made when written),
    so equal names in different folders never collide.  Without -o/-d/-c, each output goes
    beside its input, for files and folders alike.
    """

    def __init__(
        self,
        inputs: tuple[str, ...],
        output: str | None,
        outdir: str | None,
        stdout: bool,
        force: bool,
        suffix: str,
        beside: str | None = None,
        found: Inputs | None = None,
    ):
        if (output is not None) + (outdir is not None) + bool(stdout) > 1:
            raise click.UsageError("give only one of -o, -d and -c")
        if found is not None and found.folders and (output is not None or stdout):
            raise click.UsageError(f"{'-o' if output is not None else '-c'} takes one file, not a folder: use -d DIR (or neither)")
        if output is not None and len(inputs) > 1:
            raise click.UsageError("-o takes one input; use -d DIR for several")
        if (stdout or output == "-") and len(inputs) > 1:
            raise click.UsageError("only one input can be written to stdout")
        if inputs.count("-") > 1:
            raise click.UsageError("stdin ('-') can be read only once")
        self.output, self.outdir, self.force, self.suffix = output, outdir, force, suffix
        self.beside = beside or suffix  # the suffix of an output written beside its input
        self.to_stdout = stdout or output == "-" or (output is None and outdir is None and inputs == ("-",))
        self.written: set[Path] = set()
        self.relative = found.relative if found is not None else {}
        if self.to_stdout and sys.stdout.isatty():
            raise CliError("refusing to write binary data to a terminal (use -o FILE or redirect stdout)")
        self._check_up_front(inputs)

    def _check_up_front(self, inputs: tuple[str, ...]) -> None:
        """-d and -o are checked before the model is even loaded."""
        from ..outputs import OutputError, check_output_path, prepare_output_dir

        try:
            if self.outdir is not None:
                prepare_output_dir(self.outdir)
            if self.output not in (None, "-"):
                if same_file(inputs[0], self.output):
                    raise Failure(display(inputs[0]), "output would overwrite the input")
                check_output_path(self.output, self.force)
        except OutputError as exc:
            raise CliError(str(exc)) from None

    def target(self, name: str) -> str:
        """Output path for input ``name`` ('-' for stdout)."""
        if self.to_stdout:
            return "-"
        if self.output is not None:
            return self.output
        if name == "-":
            raise Failure("<stdin>", "needs -o FILE, -d DIR or -c when reading stdin with other inputs")
        if self.outdir is not None:
            place = self.relative.get(name, Path(Path(name).name)).parent  # mirrors the input's folder tree
            return str(Path(self.outdir) / place / (Path(name).stem + self.suffix))
        return str(Path(name).with_name(Path(name).stem + self.beside))

    def check(self, name: str, target: str) -> None:
        """Refuse this input's output before its work is done: the input itself, another output, a directory, an existing file."""
        from ..outputs import OutputError, check_output_path

        if target == "-":
            return
        if same_file(name, target):
            raise Failure(name, "output would overwrite the input")
        if Path(target).resolve() in self.written:
            raise Failure(name, f"{target}: would overwrite another output of this run")
        try:
            if self._new_subfolder(target):
                _check_can_make(Path(target).parent, target)
            else:
                check_output_path(target, self.force)
        except OutputError as exc:
            raise Failure(name, str(exc)) from None

    def _new_subfolder(self, target: str) -> bool:
        """Whether ``target`` lies in a subfolder of -d DIR that does not exist yet (made when the output is written)."""
        return self.outdir is not None and not Path(target).parent.exists()

    def write(self, name: str, target: str, data: bytes) -> None:
        from ..outputs import OutputError, prepare_output_dir, write_output

        if target == "-":
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
            return
        self.check(name, target)  # again: the file system may have changed during the work
        try:
            if self._new_subfolder(target):
                prepare_output_dir(Path(target).parent)
            write_output(target, data, self.force)
        except OutputError as exc:
            raise Failure(name, str(exc)) from None
        self.written.add(Path(target).resolve())


def _check_can_make(folder: Path, target: str) -> None:
    """A subfolder to be made for ``target``: refused now if a file stands where one of its folders must be."""
    from ..outputs import OutputError

    for ancestor in (folder, *folder.parents):
        if ancestor.exists():
            if not ancestor.is_dir():
                raise OutputError(f"{target}: {ancestor} is not a directory")
            return


def same_file(name: str, target: str) -> bool:
    if name == "-" or target == "-":
        return False
    try:
        return Path(target).exists() and Path(target).resolve() == Path(name).resolve()
    except OSError:
        return False


def nothing_found(found: Inputs) -> None:
    """No file to work on, only folders that held none: one line for each, exit 1 (before a model is loaded)."""
    if found.errors and not found.files:
        for line in found.errors:
            stderr(line)
        sys.exit(1)
