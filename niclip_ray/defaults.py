"""Defaults shared by the cores, the stages and the CLI's options, importable without their dependencies.

The CLI shows them in ``--help`` without importing torch, nilearn or Ray.
"""

#: Studies per part of the image-feature stage.
IMAGES_SHARD_SIZE = 256
#: Studies per part of the text-feature stage.
TEXT_SHARD_SIZE = 128
#: Texts per forward pass of the text model.
TEXT_BATCH_SIZE = 8
#: Longest text embedded, in tokens (longer texts are an error row).
MAX_TOKENS = 262_144
#: Task scores a decoder ranks by (``docs/method.md``, "Ranking and flags"); the first, the paper's, is the default.
RANK_BY = ("posterior", "bayes_factor", "likelihood")
