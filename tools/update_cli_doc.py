"""Rewrite the help texts quoted in docs/CLI.md from the installed command (run after changing an option).

    python tools/update_cli_doc.py [--check]

Every text that starts with a line ``$ aecompress … --help`` inside a fenced code block, up to
the next ``$`` line or the fence, is replaced by that command's output at 100 columns.  ``--check`` changes nothing and exits 1
when a block is out of date.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "CLI.md"
BLOCK = re.compile(r"^\$ (aecompress[^\n]*--help)\n(.*?)(?=^```|^\$ )", re.M | re.S)


def help_text(command: str) -> str:
    """The help of ``aecompress …``, run as ``python -m aecompress`` by this interpreter (which names itself aecompress)."""
    env = {**os.environ, "COLUMNS": "100"}
    args = [sys.executable, "-m", *shlex.split(command)]
    return subprocess.run(args, capture_output=True, text=True, env=env, check=True).stdout


def main() -> int:
    text = DOC.read_text()
    updated = BLOCK.sub(lambda m: f"$ {m.group(1)}\n{help_text(m.group(1))}", text)
    if "--check" in sys.argv[1:]:
        if updated != text:
            print(f"{DOC}: help texts are out of date (python tools/update_cli_doc.py)", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
