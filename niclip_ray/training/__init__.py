"""Training of the CLIP heads: data join, splits, metrics and a pure-torch loop.

The Ray Train wrapper lives in :mod:`niclip_ray.training.ray_train` and is imported only
where Ray is wanted.
"""
