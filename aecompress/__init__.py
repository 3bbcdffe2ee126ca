"""aecompress: a learned image codec for the command line."""

from .codec import Codec, DecodeError, decode_image, encode_image, load_model
from .modelfile import LoadedModel, ModelFileError

__version__ = "0.1.0"
__all__ = ["Codec", "DecodeError", "LoadedModel", "ModelFileError", "decode_image", "encode_image", "load_model", "__version__"]
