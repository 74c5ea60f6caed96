"""Shared fixtures: every test runs single-threaded torch, seeded, and writes under tmp_path."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _seeded_torch() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _results_in_tmp(tmp_path, monkeypatch) -> None:
    """Commands default to results/ under the working directory: keep tests out of the repo."""
    monkeypatch.chdir(tmp_path)
