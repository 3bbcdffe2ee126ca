"""The ``aecompress`` command group, its context, and the one way a command fails: ``CliError``.

Conventions of the Unix compressors: data alone on stdout, messages on stderr,
no binary to a terminal, inputs kept, no overwrite without ``-f``, outputs written
atomically, exit 0 / 1 (failure) / 2 (usage).
"""

from __future__ import annotations

import sys
import traceback
from dataclasses import dataclass
from typing import NoReturn

import click

from .. import __version__, store

EXIT_FAILURE = 1
EXIT_USAGE = 2


class CliError(Exception):
    """The command fails: ``aecompress: error: MESSAGE`` on stderr, then exit ``exit_code`` (1 failure, 2 usage).

    Raise it anywhere under a command; the group turns it into that one line.  Under
    --debug a failure raised while handling another error first prints the traceback.
    """

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE):
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class Failure(CliError):
    """One input or output failed: a batch reports ``aecompress: NAME: REASON`` and goes on with the others.

    Outside a batch (an output refused up front) it ends the command as any ``CliError``.
    """

    def __init__(self, name: str, reason: str):
        super().__init__(f"{name}: {reason}")
        self.line = fail_line(name, reason)


@dataclass
class Context:
    debug: bool = False


def stderr(message: str) -> None:
    click.echo(message, err=True)


def fail_line(name: str, message: str) -> str:
    return f"aecompress: {name}: {message}"


def error_line(message: str) -> str:
    return f"aecompress: error: {message}"


def warning_line(message: str) -> str:
    return f"aecompress: warning: {message}"


def note_line(message: str) -> str:
    """Something the user may not expect but that is no problem (``warning_line``'s milder sibling)."""
    return f"aecompress: note: {message}"


def debugging() -> bool:
    """Whether ``aecompress --debug`` was given (read from click's context, so no caller has to pass it)."""
    ctx = click.get_current_context(silent=True)
    obj = ctx.find_object(Context) if ctx is not None else None
    return bool(obj and obj.debug)


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type's name."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _exit(message: str, exit_code: int, traced: BaseException | None) -> NoReturn:
    """One line on stderr and exit; under --debug first the traceback of ``traced``."""
    if traced is not None and debugging():
        traceback.print_exception(type(traced), traced, traced.__traceback__)
    stderr(error_line(message))
    sys.exit(exit_code)


def _origin(exc: CliError) -> BaseException | None:
    """The error a ``CliError`` was raised from or while handling (itself when raised ``from None``); None for neither."""
    if exc.exit_code == EXIT_USAGE or exc.__context__ is None:
        return None
    return exc.__cause__ or (exc if exc.__suppress_context__ else exc.__context__)


class _Main(click.Group):
    """The command group: a ``CliError`` or an error nobody expected ends in one line (the traceback under --debug)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt):
            raise
        except CliError as exc:
            _exit(exc.message, exc.exit_code, _origin(exc))
        except OSError as exc:
            _exit(f"{exc.filename}: {exc.strerror or exc}" if exc.filename else str(exc) or type(exc).__name__, EXIT_FAILURE, exc)
        except Exception as exc:
            _exit(f"{type(exc).__name__}: {first_line(exc)} (a bug? run with --debug and report the traceback)", EXIT_FAILURE, exc)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(
    __version__, "-V", "--version", prog_name="aecompress", message=f"%(prog)s %(version)s (default model {store.default_id()})"
)
@click.option("--debug", is_flag=True, help="Show tracebacks of errors (for bug reports).")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """aecompress: a learned image codec.

    \b
    aecompress encode photo.png -o photo.aec      compress (default model)
    aecompress decode photo.aec                   decompress (to photo.decoded.png)
    aecompress train DIR -o my.safetensors        train a model on your images
    aecompress encode --target-size 50k x.png     the best quality that fits in 50 KiB
    aecompress eval DIR                           rate–distortion against JPEG, WebP, AVIF…
    aecompress score DIR                          the images a model finds most unusual
    aecompress info FILE                          what a .aec, model or checkpoint file holds

    No output is overwritten without -f; errors are one line (--debug, before
    the command, adds the traceback).
    """
    ctx.obj = Context(debug=debug)
