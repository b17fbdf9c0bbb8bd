"""NeuroVault collections in nilearn's on-disk layout (reader, and fetcher when online)."""

from niclip_ray.neurovault.collections import NeuroVaultImage, find_collection, is_collection_dir, read_collection

__all__ = ["NeuroVaultImage", "find_collection", "is_collection_dir", "read_collection"]
