"""The demo corpus's study labels as Cognitive Atlas terms: the truth its maps are scored against."""

from __future__ import annotations

import pandas as pd

from niclip_ray.evaluation.mappings import truth_from_labels

#: The task each study label of the corpus stands for, in the bundled ontology.
LABEL_TASKS = {"n-back": "n-back task", "flanker": "eriksen flanker task"}
#: The task of nilearn's motor map (NeuroVault image 10426).
MOTOR_TASK = "motor fMRI task paradigm"


def truth_table(map_labels: dict[str, str], ontology) -> pd.DataFrame:
    """True task, concepts and domains of each map, from the ontology's hierarchy."""
    domain_names = ontology.domains.set_index("domain_id")["name"]
    concepts = ontology.concepts.set_index("name")["domain_id"]
    tasks = {**LABEL_TASKS, "motor": MOTOR_TASK}
    label_terms = {}
    for label, task in tasks.items():
        linked = ontology.concepts_of(task)
        label_terms[label] = {
            "task": [task],
            "concept": linked,
            "domain": sorted({domain_names[concepts[c]] for c in linked}),
        }
    return truth_from_labels(map_labels, label_terms)


def report_maps(map_labels: dict[str, str], per_label: int) -> tuple[list[str], str]:
    """Maps drawn in the report, and why: the first ``per_label`` of each label by map id.

    Every map is scored; the report draws a few of each label so that it stays readable and
    no label is left out.

    Returns
    -------
    (map ids, reason)
        The ids, label by label, and the reason as the report prints it.
    """
    shown: dict[str, list[str]] = {}
    for map_id, label in sorted(map_labels.items()):
        if len(shown.setdefault(label, [])) < per_label:
            shown[label].append(map_id)
    reason = (f"the first {per_label} of each label ({', '.join(sorted(shown))}) in map id order, so that every "
              f"label is shown and the report stays short; all {len(map_labels)} maps are decoded and scored")
    return [m for label in sorted(shown) for m in shown[label]], reason
