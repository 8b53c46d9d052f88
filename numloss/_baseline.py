"""What a NumPy user writes without numloss: whole-array softmax/sigmoid CE.

Used by ``numloss bench`` (the NumPy column) and ``numloss check``.  Stable
formulas, in the logits' dtype, with the (N, C) temporaries that NumPy needs.
"""

import numpy as np

from ._typing import AnyArray


def softmax_ce_with_grad(logits: AnyArray, target: AnyArray) -> tuple[np.floating, AnyArray]:
    """Mean softmax CE over integer targets and its gradient; logits (N, C)."""
    n = logits.shape[0]
    m = logits.max(axis=1, keepdims=True)
    e = np.exp(logits - m)
    s = e.sum(axis=1, keepdims=True)
    rows = np.arange(n)
    loss = (np.log(s[:, 0]) + m[:, 0] - logits[rows, target]).mean()
    grad = e / s
    grad[rows, target] -= 1
    grad /= n
    return loss, grad


def sigmoid_ce_with_grad(logits: AnyArray, target: AnyArray) -> tuple[np.floating, AnyArray]:
    """Mean sigmoid CE (softplus form) and its gradient; any shape."""
    loss = (np.logaddexp(0, logits) - target * logits).mean()
    grad = (1 / (1 + np.exp(-logits)) - target) / logits.size
    return loss, grad
