"""Reading ``torch.save`` files safely, with one-line errors that name the file.

Only plain state dicts are read (``torch.load(weights_only=True)``): unpickling any other
object can run code. Torch's own refusal is a screen of advice that ends by suggesting
``weights_only=False``; here it becomes one line saying what the file holds instead.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

from niclip_ray.errors import InputError

_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


def load_state_dict_file(path: str | Path) -> dict:
    """Load a ``torch.save`` file that holds only tensors and plain containers, on CPU.

    Parameters
    ----------
    path : str or Path
        A ``.pt``/``.pth`` file.

    Returns
    -------
    dict
        What the file holds (a state dict, or a dict wrapping one), tensors on CPU.

    Raises
    ------
    InputError
        In one line naming the file: missing, corrupt, holding pickled objects other than
        tensors, or not holding a dict.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = _UNSUPPORTED_GLOBAL.search(str(exc))
        if found is None:
            raise InputError(f"{path}: not a torch state dict file (corrupt, or not written by torch.save)") from None
        raise InputError(
            f"{path}: not a plain state dict of tensors (it holds pickled objects such as {found.group(1)}); "
            "it was not loaded, because unpickling them can run code: save model.state_dict() instead"
        ) from None
    except (RuntimeError, EOFError) as exc:
        reason = (str(exc).strip().split(". ")[0] or type(exc).__name__)[:200]
        raise InputError(f"{path}: not a readable torch file ({reason})") from None
    if not isinstance(state, dict):
        raise InputError(f"{path}: holds a {type(state).__name__}, not a state dict")
    return state
