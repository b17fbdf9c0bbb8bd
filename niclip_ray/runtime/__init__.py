"""The only place that talks to Ray's cluster APIs (``ray.init``, the Jobs API)."""

from niclip_ray.runtime.session import RayOptions, describe_mode, ray_session

__all__ = ["RayOptions", "describe_mode", "ray_session"]
