"""The one L2 normaliser of the project and its epsilon.

The method normalises every vector the same way, ``x / (||x|| + 1e-8)`` (``docs/method.md``,
"Normalisation": text embeddings, the prior's document and task rows, the atlas
coefficients and vocabulary embeddings at prediction time): :func:`l2_normalise`.

The CLIP heads (:mod:`niclip_ray.model.clip`) end with torch's ``F.normalize`` and the same
:data:`NORM_EPS`, which divides by ``max(||x||, eps)`` instead. The two agree to the bit
in float32 whenever ``||x||`` exceeds about 0.25 (adding 1e-8 is then lost in rounding), as
it always does after the heads' final LayerNorm; the heads keep ``F.normalize`` because it
is differentiated in training, and another op would round the gradients, hence the
trained weights, differently.
"""

from __future__ import annotations

import numpy as np

#: Added to a vector's norm before dividing, as the reference does.
NORM_EPS = 1e-8


def l2_normalise(x: np.ndarray, eps: float = NORM_EPS, dtype: type = np.float32) -> np.ndarray:
    """Rows of ``x`` divided by ``(||row|| + eps)``.

    Parameters
    ----------
    x : (..., d) array
    eps : float
    dtype : numpy float type
        Precision of the computation and of the result: float32, the precision of the
        stored features and of the model (training inputs), or float64, in which decoding
        and the prior compute.

    Returns
    -------
    (..., d) array of ``dtype``
        Zero rows stay zero.
    """
    x = np.asarray(x, dtype=dtype)
    return x / (np.linalg.norm(x, axis=-1, keepdims=True) + dtype(eps))
