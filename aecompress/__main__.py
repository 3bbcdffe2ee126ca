"""``python -m aecompress`` (also what ``torchrun -m aecompress`` runs)."""

from .cli import main

if __name__ == "__main__":
    main(prog_name="aecompress")
