"""The report's methods paragraph and its references, written from the run's parameters.

Like NiMARE's ``_generate_description``, the text states what was done with the numbers
used, and cites each method inline: the decoding from the decoder's own
:meth:`~niclip_ray.decoding.decoder.Decoder.describe`, the scoring from the evaluator's
cut-offs and null. :func:`cited_references` lists the references whose inline citation
appears in a text.
"""

from __future__ import annotations

from collections.abc import Mapping

#: Inline citation -> full reference.
REFERENCES = {
    "Peraza et al., 2025": "Peraza, J. A., et al. (2025). NiCLIP: decoding brain activation maps into cognitive "
    "terms with contrastive language-image pretraining. bioRxiv. doi:10.1101/2025.06.14.659706",
    "Radford et al., 2021": "Radford, A., et al. (2021). Learning transferable visual models from natural language "
    "supervision. ICML. arXiv:2103.00020",
    "Dadi et al., 2020": "Dadi, K., et al. (2020). Fine-grain atlases of functional modes for fMRI analysis. "
    "NeuroImage, 221, 117126. doi:10.1016/j.neuroimage.2020.117126",
    "Wager et al., 2007": "Wager, T. D., Lindquist, M., & Kaplan, L. (2007). Meta-analysis of functional "
    "neuroimaging data: current and future directions. Soc. Cogn. Affect. Neurosci., 2(2), 150-158. "
    "doi:10.1093/scan/nsm015",
    "Poldrack et al., 2011": "Poldrack, R. A., et al. (2011). The Cognitive Atlas: toward a knowledge foundation "
    "for cognitive neuroscience. Front. Neuroinform., 5, 17. doi:10.3389/fninf.2011.00017",
    "Yarkoni et al., 2011": "Yarkoni, T., et al. (2011). Large-scale automated synthesis of human functional "
    "neuroimaging data. Nat. Methods, 8(8), 665-670. doi:10.1038/nmeth.1635",
    "Rubin et al., 2017": "Rubin, T. N., et al. (2017). Decoding brain activity using a large-scale probabilistic "
    "functional-anatomical atlas of human cognition. PLoS Comput. Biol., 13(10), e1005649. "
    "doi:10.1371/journal.pcbi.1005649",
    "Salo et al., 2023": "Salo, T., et al. (2023). NiMARE: Neuroimaging Meta-Analysis Research Environment. "
    "Aperture Neuro, 3. doi:10.52294/001c.87681",
    "Menuet et al., 2022": "Menuet, R., et al. (2022). Comprehensive decoding mental processes from Web repositories "
    "of functional brain images. Sci. Rep., 12, 7050. doi:10.1038/s41598-022-10710-1",
}


def _k_text(k: Mapping[str, int]) -> str:
    return ", ".join(f"{level} k={value}" for level, value in k.items())


def _decoding_text(decoder: Mapping[str, object], corpus: str, n_maps: int) -> str:
    n_train = decoder.get("n_train_studies")
    trained_on = f"{n_train} studies of {corpus}" if n_train else corpus
    atlas = "the DiFuMo atlas (Dadi et al., 2020)"
    if decoder["atlas_standin"]:
        atlas = f"{decoder['atlas_id']}, an offline stand-in for the DiFuMo atlas (Dadi et al., 2020),"
    levels = ", with concepts and domains obtained by noisy-OR over the ontology" if decoder["hierarchical"] else ""
    prior = "the vocabulary's prior" if decoder["prior"] == "vocabulary" else "a uniform prior"
    kept = decoder["topk"]
    ranked = "tasks and concepts" if decoder["hierarchical"] else "tasks"
    kept_text = "every term was ranked" if kept is None else f"the top {kept} {ranked} of each map were kept"
    bundle = f" (model bundle {decoder['bundle_sha256']})" if decoder.get("bundle_sha256") else ""
    return (
        f"Brain maps were decoded with NiCLIP (Peraza et al., 2025), a contrastive language-image model "
        f"(Radford et al., 2021) trained on {trained_on}. Each study's peaks were turned into a "
        f"modelled-activation map with 10 mm MKDA spheres (Wager et al., 2007) and projected onto {atlas} "
        f"by least squares; its text was embedded with {decoder.get('text_model_id') or 'a language model'}. "
        f"{n_maps} maps were decoded into a vocabulary of {decoder['n_terms']['task']} Cognitive Atlas task names "
        f"(Poldrack et al., 2011){levels}. A map's similarity to each task name (the cosine of their CLIP "
        f"features, scaled by {decoder['logit_scale']:g}) gave task likelihoods by a softmax over tasks, and "
        f"posteriors with {prior}; {kept_text}{bundle}."
    )


def methods_text(
    decoder: Mapping[str, object],
    *,
    corpus: str,
    n_maps: int,
    k: Mapping[str, int],
    n_permutations: int,
    seed: int,
    baselines: Mapping[str, Mapping[str, object]] | None = None,
) -> str:
    """A methods paragraph for a decoding run, with inline citations.

    Parameters
    ----------
    decoder : mapping
        What decoded the maps: :meth:`Decoder.describe() <niclip_ray.decoding.decoder.Decoder.describe>`
        (training studies, text model, atlas, vocabulary sizes, prior, logit scale, top-k).
    corpus : str
        What the corpus is (e.g. "NiMARE's n-back/flanker studyset (320 studies)").
    n_maps : int
        Decoded maps.
    k : mapping
        Cut-off per level used by the evaluator.
    n_permutations, seed : int
        The permutation null.
    baselines : mapping, optional
        Baseline name (``neurosynth``, ``gclda``) -> its parameters.

    Returns
    -------
    str
        Paragraphs separated by blank lines.
    """
    paragraphs = [
        _decoding_text(decoder, corpus, n_maps),
        f"Predictions were scored per level with recall@k, hit@k, the best rank of a true label and the mean "
        f"reciprocal rank ({_k_text(k)}). Chance was estimated with {n_permutations:,} permutations "
        f"(seed {seed}) of the prediction lists across maps within each level; empirical p-values are "
        f"(#null ≥ observed + 1)/(permutations + 1), scores are also reported divided by the null mean, and a "
        f"score is above chance when it exceeds the null mean with p ≤ 0.05, as in per-term decodability analyses "
        f"(Menuet et al., 2022).",
    ]
    described = []
    for name, params in (baselines or {}).items():
        settings = ", ".join(f"{key}={value}" for key, value in params.items())
        if name == "neurosynth":
            described.append(
                "a Neurosynth-style correlation decoder (Yarkoni et al., 2011): one MKDA chi-square meta-analysis "
                "per term contrasting studies that mention it with the others, correlated with each map"
                + (f" ({settings})" if settings else " (NiMARE's default settings)")
            )
        elif name == "gclda":
            described.append(f"a GC-LDA topic model decoded with its voxel-topic and topic-term probabilities "
                             f"(Rubin et al., 2017{'; ' + settings if settings else ''})")
        else:
            described.append(f"{name} ({settings or 'default settings'})")
    if described:
        paragraphs.append(
            "Baselines were trained on the same training studies and vocabulary with NiMARE (Salo et al., 2023): "
            + "; and ".join(described)
            + ". Term annotations count each task name as a whole phrase in the study texts, so names of three "
            "or more words are not lost as they are with a bigram limit. Baselines were scored at the task level "
            "by the same evaluator."
        )
    return "\n\n".join(paragraphs)


def standin_banner(atlas_ids: list[str]) -> str | None:
    """The warning a report opens with when any map was projected on a stand-in atlas (else None)."""
    standins = sorted({a for a in atlas_ids if a and "standin" in a})
    if not standins:
        return None
    return (
        f"These maps were projected on {', '.join(standins)}, an offline stand-in for the DiFuMo atlas, not on "
        "DiFuMo itself. The predictions show that the pipeline runs end to end; they do not say what the maps "
        "mean. Decode with a model trained on the real DiFuMo atlas for results to interpret."
    )


def cited_references(text: str) -> list[str]:
    """The full references whose inline citation (e.g. "Salo et al., 2023") occurs in ``text``."""
    return [reference for cite, reference in REFERENCES.items() if cite in text]
