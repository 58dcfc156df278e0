"""An ensemble of classifiers as one ``nn.Module``, and the combination of their outputs.

:class:`Ensemble` returns the members' combined, normalised log-probabilities, so everything
that takes a model's logits (``log_softmax``, ``argmax``, :func:`biasvar.predict`,
:func:`biasvar.evaluate`) takes an ensemble unchanged; :func:`combine_log_probs` is the same
combination on stored (K, m, C) log-probabilities, in numpy.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, unknown_name

__all__ = ["Ensemble", "combine_log_probs", "COMBINES"]

COMBINES = ("logprob", "prob")


def combine_log_probs(log_probs: np.ndarray, how: str = "logprob") -> np.ndarray:
    """Combine (K, m, C) log-probabilities into the ensemble's (m, C) log-probabilities:
    ``logprob``: normalise(mean_k log p_k); ``prob``: log(mean_k p_k). In float64."""
    lp = np.asarray(log_probs, dtype=np.float64)
    if how == "logprob":
        mean = lp.mean(axis=0)
    elif how == "prob":
        top = lp.max(axis=0)
        mean = top + np.log(np.exp(lp - top).mean(axis=0))
    else:
        raise unknown_name("combine", how, COMBINES)
    top = mean.max(axis=1, keepdims=True)
    return mean - (top + np.log(np.exp(mean - top).sum(axis=1, keepdims=True)))


class Ensemble(nn.Module):
    """K models as one: ``forward`` returns the combined, normalised log-probabilities
    (``logprob``: normalise(mean log-softmax); ``prob``: log mean softmax), which any code that
    takes logits (``log_softmax``, ``argmax``, :func:`biasvar.predict`) reads unchanged."""

    def __init__(self, members: Sequence[nn.Module], combine: str = "logprob"):
        super().__init__()
        if combine not in COMBINES:
            raise unknown_name("combine", combine, COMBINES)
        if len(members) < 1:
            raise ConfigError("members: an ensemble needs at least one model.")
        self.members = nn.ModuleList(members)
        self.combine = combine

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lps = torch.stack([torch.log_softmax(m(x).float(), dim=1) for m in self.members])
        if self.combine == "logprob":
            mean = lps.mean(0)
        else:
            mean = torch.logsumexp(lps, 0) - math.log(len(self.members))
        return torch.log_softmax(mean, dim=1)
