"""niclip-ray: NiCLIP brain decoding as a distributed batch system on Ray."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("niclip-ray")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
