"""timm for the end-to-end comparisons: the one importer lives in ``affinity._timm``."""

from affinity._timm import import_timm

__all__ = ["import_timm"]
