"""Reports and pictures: a study's HTML report, and the affinities drawn as receptive fields.

Compute first, render second: ``study`` and ``fields`` return data (DataFrames, numpy arrays),
``pictures`` draws it with matplotlib (Agg, headless), ``html`` lays a study's pictures out in
one self-contained page.
"""

from __future__ import annotations
