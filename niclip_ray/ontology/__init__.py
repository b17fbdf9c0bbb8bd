"""Cognitive Atlas ontology: tasks, concepts, the ten domains, and the hierarchy matrices."""
