"""Training of the CLIP heads: data join, splits, metrics and a pure-torch loop.

The Ray Train wrapper (:mod:`niclip_ray.training.ray_train`: the worker function, the
one-fold launcher and fold scheduling) is the only module here that uses Ray, and is
imported only where Ray is wanted.
"""
