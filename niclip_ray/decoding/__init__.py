"""Decoding: model bundles, posterior / Bayes factor / noisy-OR maths, and the Decoder."""
