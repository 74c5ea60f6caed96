"""AdamW over one buffer per parameter group: the optimiser step of a small model on the CPU.

A search model has ~50 parameter tensors of a few hundred numbers each. On the CPU torch's
multi-tensor (foreach) kernels loop over them in C++ and the optimiser's Python bookkeeping
loops over them too: ~1,800 ops a step, 8% of a trial's training. Here the parameters of a
group live in one buffer (each parameter a view into it), the gradients are gathered into
one more, and AdamW and the clipping's multiplication run once per group. Every element gets
the same arithmetic as before, so the weights are the same bit for bit; the clipping's norm
is still taken per parameter tensor, as ``clip_grad_norm_`` takes it, since its sum depends
on how the numbers are split. The per-parameter optimiser stays the run's record: its
``state_dict`` (what an interrupted run saves) is filled from the buffers when asked for.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

#: the per-parameter state AdamW keeps, in the flat optimiser: one buffer per group
_BUFFERS = ("exp_avg", "exp_avg_sq")


class FlatAdamW:
    """Steps ``optimizer`` (a per-parameter ``torch.optim.AdamW``) through flat buffers.

    Args:
        optimizer: the run's optimiser; its parameters become views into one buffer per
            group until ``release``; its state (a resumed run's) carries over.
        parameters: every trained parameter in the order ``clip_grad_norm_`` would see them
            (``model.parameters()``), for the gradient norm.
    """

    def __init__(self, optimizer: torch.optim.AdamW, parameters: list[nn.Parameter]) -> None:
        self.public = optimizer
        self.parameters = [p for p in parameters if p.requires_grad]
        self.groups = [list(g["params"]) for g in optimizer.param_groups]
        flat_groups = []
        self.grads: list[Tensor] = []
        for group, params in zip(optimizer.param_groups, self.groups):
            data = torch.cat([p.detach().reshape(-1) for p in params]) if params else torch.zeros(0)
            for p, view in zip(params, _views(data, params)):
                p.data = view
            flat = nn.Parameter(data)
            flat.grad = torch.zeros_like(data)
            self.grads.append(flat.grad)
            flat_groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": [flat]})
        self.inner = torch.optim.AdamW(flat_groups)
        self._load_state()

    def step(self, clip: float | None) -> bool:
        """Clip (when ``clip``) and step as ``clip_grad_norm_`` then ``optimizer.step()`` would;
        False (nothing done) when a parameter has no gradient: the caller steps ``optimizer``
        itself, after ``release``."""
        if any(p.grad is None for p in self.parameters):
            return False
        for params, grad in zip(self.groups, self.grads):
            if params:
                torch.cat([p.grad.reshape(-1) for p in params], out=grad)
        flat = [g["params"][0] for g in self.inner.param_groups]
        if clip:
            # get_total_norm(grads, foreach=True)'s arithmetic for one device and dtype: the
            # norm of each tensor, then of their stack (without its grouping and copies)
            norms = torch._foreach_norm([p.grad for p in self.parameters], 2.0)  # type: ignore[misc]
            total = torch.linalg.vector_norm(torch.stack(norms), 2.0)
            nn.utils.clip_grads_with_norm_(flat, clip, total, foreach=True)
        for outer, inner in zip(self.public.param_groups, self.inner.param_groups):
            inner["lr"] = outer["lr"]
        self.inner.step()
        return True

    def zero_grad(self) -> None:
        """``optimizer.zero_grad(set_to_none=True)``, without its per-group bookkeeping."""
        for p in self.parameters:
            p.grad = None

    def release(self) -> None:
        """Write the state back into the per-parameter optimiser and give every parameter its
        own storage again (the buffers are dropped); ``optimizer`` then steps on its own."""
        for params, group in zip(self.groups, self.inner.param_groups):
            state = self.inner.state.get(group["params"][0])
            views = {k: _views(state[k], params) for k in _BUFFERS} if state else {}
            for i, p in enumerate(params):
                p.data = p.data.clone()
                if state:
                    moments = {k: v[i].clone() for k, v in views.items()}
                    self.public.state[p] = {"step": state["step"].clone(), **moments}
        self.groups = []

    def __enter__(self) -> FlatAdamW:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _load_state(self) -> None:
        """The per-parameter optimiser's state (a resumed run's), gathered into the buffers."""
        for params, group in zip(self.groups, self.inner.param_groups):
            states: list[dict[str, Any]] = [self.public.state[p] for p in params if p in self.public.state]
            if states:
                self.inner.state[group["params"][0]] = {
                    "step": states[0]["step"].clone(),
                    **{k: torch.cat([s[k].reshape(-1) for s in states]) for k in _BUFFERS},
                }


def flat_adamw(optimizer: torch.optim.AdamW, parameters: list[nn.Parameter]) -> FlatAdamW | None:
    """A ``FlatAdamW`` for ``optimizer``, or None where its state cannot be one buffer per
    group (some parameters of a group have state and others not, or the steps differ), or
    the parameters are not all of one device and dtype."""
    if len({(p.device, p.dtype) for p in parameters}) > 1:
        return None
    for group in optimizer.param_groups:
        states = [optimizer.state.get(p) for p in group["params"]]
        if any(states) and not (all(states) and len({float(s["step"]) for s in states}) == 1):  # type: ignore[index]
            return None
    return FlatAdamW(optimizer, parameters)


def _views(flat: Tensor, params: list[nn.Parameter]) -> list[Tensor]:
    out, start = [], 0
    for p in params:
        out.append(flat[start : start + p.numel()].view_as(p))
        start += p.numel()
    return out
