"""aecompress: a learned image codec for the command line.

The names below load on first use only, so `aecompress --version` and `--help`
start fast; coding itself needs no torch (ONNX Runtime runs the transforms).
"""

from __future__ import annotations

__version__ = "0.2.0"
__all__ = ["Codec", "DecodeError", "LoadedModel", "ModelFileError", "decode_image", "encode_image", "load_model", "__version__"]

_LAZY = {
    "Codec": "codec",
    "DecodeError": "codec",
    "decode_image": "codec",
    "encode_image": "codec",
    "load_model": "codec",
    "LoadedModel": "modelfile",
    "ModelFileError": "modelfile",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
