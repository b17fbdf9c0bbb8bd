"""niclip-ray: NiCLIP brain decoding as a distributed batch system on Ray.

``from niclip_ray import Decoder`` is the Python API (:class:`niclip_ray.decoding.decoder.Decoder`).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("niclip-ray")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"


def __getattr__(name: str):
    """``niclip_ray.Decoder``, imported on first use so ``import niclip_ray`` stays light (no torch)."""
    if name == "Decoder":
        from niclip_ray.decoding.decoder import Decoder

        return Decoder
    raise AttributeError(f"module 'niclip_ray' has no attribute {name!r}")
