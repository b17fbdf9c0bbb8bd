"""Retrieval in the model's shared latent space: brain map -> similar studies, text -> brain map.

Pure numpy/torch (no Ray):

* :mod:`~niclip_ray.retrieval.table`: the study index table (schema, rows, reader);
* :mod:`~niclip_ray.retrieval.search`: exact cosine top-k (:class:`ExactSearch`);
* :mod:`~niclip_ray.retrieval.ridge`: ridge regression with the penalty chosen by k-fold CV;
* :mod:`~niclip_ray.retrieval.brain_maps`: DiFuMo coefficients -> a map on the MNI 2 mm grid;
* :mod:`~niclip_ray.retrieval.queries`: checks of user queries (text, files, maps);
* :mod:`~niclip_ray.retrieval.index`: the :class:`Index` that answers queries;
* :mod:`~niclip_ray.retrieval.evaluation`: held-out evaluation of both directions.
"""

from niclip_ray.retrieval.index import Index, TextMatch

__all__ = ["Index", "TextMatch"]
