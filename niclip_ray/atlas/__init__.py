"""DiFuMo atlases (real or stand-in), the MNI brain mask, and least-squares projection."""
