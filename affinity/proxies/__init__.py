"""Zero-cost proxies: judge an untrained token-mixer network from a few minibatches.

One registry, ``PROXIES``: each proxy ``fn(model, batches) -> float`` is declared once, with
its paper and whether higher is better (synflow, naswot, grad_norm, snip, and the params
and flops baselines). ``score_study`` scores every trained configuration of a study and
ranks the proxies by Kendall's τ-b and Spearman's ρ with the trained val accuracy;
``affinity proxies STUDY`` prints that and writes it to ``OUT/<study>/proxies/``.

The work is in private modules, one job each: ``_proxies`` (the registry, the proxies, the
batches), ``_rank`` (τ-b and ρ), ``_study`` (scoring a study), ``_write`` (files and plots),
``render`` (the table). The public names are re-exported here and import their module on
first use, so the report can read ``FOLDER`` without importing torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from affinity import lazy_attributes

if TYPE_CHECKING:
    from affinity.proxies._proxies import PROXIES, Batch, Proxy, Scores, first_batches, score_model
    from affinity.proxies._rank import average_ranks, kendall_tau_b, spearman_rho
    from affinity.proxies._study import ProxyStudy, correlations, score_study, trained_trials
    from affinity.proxies._write import plot_proxy, write_outputs

#: the folder under a study's results folder (``OUT/<study>/proxies/``) the files go to
FOLDER = "proxies"

#: public name -> the private module defining it
_HOME = {
    **dict.fromkeys(("PROXIES", "Batch", "Proxy", "Scores", "first_batches", "score_model"), "_proxies"),
    **dict.fromkeys(("average_ranks", "kendall_tau_b", "spearman_rho"), "_rank"),
    **dict.fromkeys(("ProxyStudy", "correlations", "score_study", "trained_trials"), "_study"),
    **dict.fromkeys(("plot_proxy", "write_outputs"), "_write"),
}

__all__ = [
    "FOLDER",
    "PROXIES",
    "Batch",
    "Proxy",
    "ProxyStudy",
    "Scores",
    "average_ranks",
    "correlations",
    "first_batches",
    "kendall_tau_b",
    "plot_proxy",
    "score_model",
    "score_study",
    "spearman_rho",
    "trained_trials",
    "write_outputs",
]


__getattr__ = lazy_attributes(__name__, _HOME)
