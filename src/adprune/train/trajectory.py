"""Where the unpruned network was heading: a learning curve fitted to its validation accuracies.

The accuracy guard judges a prune against this counterfactual, not against the accuracy at the
decision, which the unpruned network would also have passed by the time the pruned one has
recovered. No torch.
"""

from __future__ import annotations

from collections.abc import Sequence


def expected_accuracy(points: Sequence[Sequence[float]], epoch: int) -> float | None:
    """The validation accuracy the unpruned network would have reached after `epoch`, from its
    `(epoch, accuracy)` points (epochs >= 1, in order): the curve `a - b / epoch` fitted to them by
    least squares, never below the last point (a network that stopped improving is expected to hold
    its accuracy, not to lose it). One point: that accuracy. None without points."""
    if not points:
        return None
    last = points[-1][1]
    if len(points) == 1:
        return last
    xs = [1.0 / p[0] for p in points]
    ys = [p[1] for p in points]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return last
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread  # = -b
    fitted = mean_y + slope * (1.0 / epoch - mean_x)
    return max(last, fitted)
