"""Per-study features: MKDA maps (sparse voxel indices) and LLM text embeddings."""
