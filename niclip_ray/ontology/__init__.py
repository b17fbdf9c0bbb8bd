"""Cognitive Atlas ontology: tasks, concepts, the ten domains, and the hierarchy matrices."""

from niclip_ray.ontology.core import DOMAINS, Ontology, save_ontology
from niclip_ray.ontology.loader import BUILTIN, builtin_dir, load_ontology
from niclip_ray.ontology.vocab import align_to_vocabulary, check_vocabulary_order

__all__ = [
    "BUILTIN",
    "DOMAINS",
    "Ontology",
    "align_to_vocabulary",
    "builtin_dir",
    "check_vocabulary_order",
    "load_ontology",
    "save_ontology",
]
