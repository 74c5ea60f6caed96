"""Shared fixtures: every test runs seeded and writes under tmp_path; under pytest-xdist
(``-n auto``) each worker process runs torch on one thread, as the workers share the cores."""

from __future__ import annotations

import os

import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seeded_torch() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _results_in_tmp(tmp_path, monkeypatch) -> None:
    """Commands default to results/ under the working directory: keep tests out of the repo."""
    monkeypatch.chdir(tmp_path)
