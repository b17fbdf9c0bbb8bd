"""Both feature stages of a corpus into one features directory (``images/`` and ``text/``).

On a cluster with GPUs the two stages run at the same time: image features on CPU actors,
text features on GPU actors. Without GPUs they share the same CPUs, so they run one after
the other (two CPU pools started together could each wait for CPUs the other holds).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from niclip_ray._docs import fill_doc
from niclip_ray.pipelines import images, text
from niclip_ray.pipelines.shards import StageSummary
from niclip_ray.runtime.session import cluster_gpus


@fill_doc
def run(
    corpus_dir: str | Path,
    out_dir: str | Path,
    *,
    image_options: dict,
    text_options: dict,
    concurrent: bool | None = None,
) -> tuple[StageSummary, StageSummary]:
    """Run the image and text stages of a corpus on the current Ray.

    Parameters
    ----------
    %(corpus_dir)s
    out_dir : path
        Features directory; stages write ``images/`` and ``text/`` inside it.
    image_options, text_options : dict
        Keyword arguments of :func:`niclip_ray.pipelines.images.run` and
        :func:`niclip_ray.pipelines.text.run`.
    concurrent : bool, optional
        Run both stages at once (default: when the cluster has GPUs).

    Returns
    -------
    (image summary, text summary)
    """
    out_dir = Path(out_dir)
    if concurrent is None:
        concurrent = cluster_gpus() > 0
    run_images = lambda: images.run(corpus_dir, out_dir / "images", **image_options)  # noqa: E731
    run_text = lambda: text.run(corpus_dir, out_dir / "text", **text_options)  # noqa: E731
    if not concurrent:
        return run_images(), run_text()
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="niclip-embed") as pool:
        image_future, text_future = pool.submit(run_images), pool.submit(run_text)
        return image_future.result(), text_future.result()
