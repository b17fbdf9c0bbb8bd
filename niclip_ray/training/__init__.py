"""Training of the CLIP heads: data join, splits, metrics and a pure-torch loop.

The Ray Train wrapper (:mod:`niclip_ray.training.ray_train`: the worker function and the
one-fold launcher) and fold concurrency (:mod:`niclip_ray.training.folds`) are imported
only where Ray is wanted.
"""
