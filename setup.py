"""affinity: every token mixer as one context aggregation (Container), exact and fast."""

from __future__ import annotations

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "affinity" / "__init__.py").read_text()).group(1)  # type: ignore[union-attr]

setup(
    name="affinity",
    version=VERSION,
    description="Token mixers of vision backbones as one context aggregation: profile, search, report.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    # the shipped search spaces live at the top level (search_spaces/) and install as
    # affinity.search_spaces, so `--space shifts.yaml` resolves after a non-editable install
    packages=[*find_packages(include=["affinity", "affinity.*"]), "affinity.search_spaces"],
    package_dir={"affinity.search_spaces": "search_spaces"},
    package_data={"affinity": ["py.typed"], "affinity.search_spaces": ["*.yaml"]},
    install_requires=[
        # torch.amp.GradScaler (mixed precision on CUDA) arrived in torch 2.3
        "torch>=2.3",
        # optuna.storages.journal.JournalFileBackend (the default storage) arrived in optuna 4.0;
        # nothing newer is needed: the TPE options, fANOVA and PED-ANOVA are all in 4.0
        "optuna>=4.0",
        "click>=8.1",
        "rich>=13",
        "fvcore>=0.1.5",
        "pandas>=2.0",
        "pyyaml>=6.0",
        # digits, the embedded default dataset, ships inside scikit-learn (no download)
        "scikit-learn>=1.3",
        # imagefolder datasets are read with Pillow (Image.Resampling arrived in Pillow 9.1)
        "pillow>=9.1",
        # report and `affinity show` render PNGs headless
        "matplotlib>=3.7",
    ],
    extras_require={
        # .safetensors checkpoints (affinity/checkpoints/io.py names this extra in its error)
        "weights": ["safetensors>=0.4"],
        # tests/checkpoints/test_timm.py and `affinity benchmark --compare-timm` compare against
        # timm's own models when it is installed (timm requires torchvision, whose wheels may not
        # load beside a CPU torch build: both then use a stand-in, affinity/_timm.py; `--no-deps`
        # suffices)
        "timm": ["timm>=0.9"],
        # the checkpoint tests write and read .safetensors files
        # hypothesis: the fuzz tests (tests/test_fuzz.py) generate space files and CLI values;
        # pytest-xdist: the suite runs on every core (-n auto): serial it took 12 min on 2 cores
        "test": ["pytest>=7", "safetensors>=0.4", "hypothesis>=6", "pytest-xdist>=3"],
        # workers on several machines share one study in PostgreSQL; postgresql:// URLs need
        # SQLAlchemy 2.1, whose default driver for them is psycopg 3 (2.0's is psycopg2)
        "postgres": ["psycopg[binary]>=3.1", "SQLAlchemy>=2.1"],
        "dev": ["pytest>=7", "hypothesis>=6", "pytest-xdist>=3", "ruff>=0.5", "mypy>=1.10", "types-PyYAML"],
        # affinity export: torch's ONNX exporter (dynamo) needs onnx and onnxscript;
        # onnxruntime runs the exported file back to check it
        "export": ["onnx>=1.16", "onnxscript>=0.2", "onnxruntime>=1.18"],
    },
    entry_points={"console_scripts": ["affinity=affinity.cli:main"]},
)
