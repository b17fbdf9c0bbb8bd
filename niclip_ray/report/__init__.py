"""The HTML report: decoded maps, top predictions, metric table, training curves, methods."""

from niclip_ray.report.figures import read_curves
from niclip_ray.report.html import write_report
from niclip_ray.report.methods import methods_text

__all__ = ["methods_text", "read_curves", "write_report"]
