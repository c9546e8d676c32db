"""What a cut cost: the pruned network's validation accuracy against where the unpruned one was heading.

The validation accuracies of a run fall into stretches, one between each pair of cuts. One learning
curve `level - b / epoch` is fitted to them by least squares, its shape `b` shared by every stretch
before the cut under judgement and its level free in each, so a stretch's own noise moves its level
but the shape comes from all of them. The unpruned network is expected on that curve at the level of
the stretch before the cut; the cut's cost is how far the mean validation accuracy of the epochs
after it stayed below the curve's mean over the same epochs. Judging a cut on several epochs, against
a curve fitted to every epoch before it, is what makes a budget of one point readable when single
epochs swing by several. No torch.
"""

from __future__ import annotations

from collections.abc import Sequence

Points = Sequence[Sequence[float]]  # (epoch >= 1, accuracy) pairs


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def curve_slope(stretches: Sequence[Points]) -> float:
    """The shared slope of accuracy against 1 / epoch, fitted within each stretch (pooled least
    squares): <= 0, as a network that trains on is not expected to get worse; 0 where no stretch
    holds two epochs."""
    covariance = spread = 0.0
    for stretch in stretches:
        if len(stretch) < 2:
            continue
        xs, ys = [1.0 / p[0] for p in stretch], [p[1] for p in stretch]
        mean_x, mean_y = _mean(xs), _mean(ys)
        covariance += sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
        spread += sum((x - mean_x) ** 2 for x in xs)
    return min(0.0, covariance / spread) if spread > 0 else 0.0


def judge_cut(before: Sequence[Points], after: Points) -> tuple[float, float] | None:
    """`(expected, reached)` for the cut that ends the stretches `before` (the last one: the epochs
    since the previous cut, outside fades) and is followed by the epochs `after`: the fitted curve's
    mean over the epochs `after` at the last stretch's level, and their mean validation accuracy.
    None when the last stretch or `after` holds no epoch."""
    if not before or not before[-1] or not after:
        return None
    slope = curve_slope(before)
    last = before[-1]
    level = _mean([p[1] - slope / p[0] for p in last])
    expected = level + slope * _mean([1.0 / p[0] for p in after])
    return expected, _mean([p[1] for p in after])
