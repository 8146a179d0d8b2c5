"""Ranger = RAdam + Lookahead, with the semantics of docs/flip.md §6.6.

torch.optim.RAdam is not used: it takes an un-rectified (SGD-like) step while the SMA length is ≤ 5, adds eps to
sqrt(v̂) instead of sqrt(v), and applies weight decay on every step. The authors' RAdam (degenerated_to_sgd=False)
makes no update at all while SMA < 5 and decays weights (p ← p − wd·lr·p) only on steps that update.
"""
from __future__ import annotations

import copy
import math

import torch


class RAdam(torch.optim.Optimizer):
    """Rectified Adam: p ← p − lr·r_t/(1−β1^t) · m_t/(sqrt(v_t)+eps), only once SMA length ρ_t ≥ 5."""

    def __init__(self, params, lr=6e-4, betas=(0.9, 0.999), eps=1e-16, weight_decay=6e-4):
        if lr <= 0 or eps < 0 or weight_decay < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"invalid RAdam settings lr={lr} betas={betas} eps={eps} weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @staticmethod
    def step_size(step: int, beta1: float, beta2: float) -> float:
        """The rectified step multiplier r_t/(1−β1^t), or 0.0 while ρ_t < 5 (no update)."""
        beta2_t = beta2**step
        sma_max = 2 / (1 - beta2) - 1
        sma = sma_max - 2 * step * beta2_t / (1 - beta2_t)
        if sma < 5:
            return 0.0
        rect = (1 - beta2_t) * (sma - 4) / (sma_max - 4) * (sma - 2) / sma * sma_max / (sma_max - 2)
        return math.sqrt(rect) / (1 - beta1**step)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("RAdam does not support sparse gradients")
                grad = p.grad.float()
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, dtype=torch.float32)
                    state["exp_avg_sq"] = torch.zeros_like(p, dtype=torch.float32)
                state["step"] += 1
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(beta1).add_(grad, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                size = self.step_size(state["step"], beta1, beta2)
                if size == 0.0:
                    continue  # still inside the variance warm-up: no update, no decay
                p32 = p.float()
                if group["weight_decay"]:
                    p32.add_(p32, alpha=-group["weight_decay"] * group["lr"])
                p32.addcdiv_(m, v.sqrt().add_(group["eps"]), value=-size * group["lr"])
                if p32 is not p:
                    p.copy_(p32)
        return loss


class Lookahead:
    """Every k inner steps: slow ← slow + α·(fast − slow); fast ← slow. Slow weights start at the initial weights.

    The slow weights live in this optimiser's state_dict, so a resumed run continues exactly.
    """

    def __init__(self, inner: torch.optim.Optimizer, k: int = 6, alpha: float = 0.5):
        if k < 1 or not 0 < alpha <= 1:
            raise ValueError(f"invalid Lookahead settings k={k} alpha={alpha}")
        self.inner, self.k, self.alpha = inner, k, alpha
        self.param_groups = inner.param_groups
        self.defaults = inner.defaults
        self.state = inner.state
        self.lookahead_steps = 0
        self.slow = [p.detach().clone() for g in inner.param_groups for p in g["params"]]

    def _params(self):
        return [p for g in self.param_groups for p in g["params"]]

    def zero_grad(self, set_to_none: bool = True):
        self.inner.zero_grad(set_to_none=set_to_none)

    @torch.no_grad()
    def step(self, closure=None):
        loss = self.inner.step(closure)
        self.lookahead_steps += 1
        if self.lookahead_steps % self.k == 0:
            for fast, slow in zip(self._params(), self.slow):
                slow.add_(fast.detach() - slow, alpha=self.alpha)
                fast.copy_(slow)
        return loss

    def state_dict(self):
        return {"inner": copy.deepcopy(self.inner.state_dict()),  # torch returns live tensors
                "slow": [s.clone() for s in self.slow],
                "lookahead_steps": self.lookahead_steps, "k": self.k, "alpha": self.alpha}

    def load_state_dict(self, state):
        self.inner.load_state_dict(state["inner"])
        if len(state["slow"]) != len(self.slow):
            raise ValueError(f"Lookahead state has {len(state['slow'])} slow tensors, model has {len(self.slow)}")
        for s, t in zip(self.slow, state["slow"]):
            s.copy_(t)
        self.lookahead_steps = int(state["lookahead_steps"])
        # param_groups/state are views of the inner optimiser; re-bind after its load replaced them
        self.param_groups, self.state = self.inner.param_groups, self.inner.state


def ranger(params, lr=6e-4, weight_decay=6e-4, eps=1e-16, betas=(0.9, 0.999), k=6, alpha=0.5) -> Lookahead:
    """The authors' optimiser with their defaults (docs/flip.md §6.6)."""
    return Lookahead(RAdam(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay), k=k, alpha=alpha)
