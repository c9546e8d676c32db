"""The bench: ADP beside the dense baseline and the peer pruning methods, every figure from the runs.

`config` reads a bench configuration; `methods` turns each method and seed into a `TrainConfig`
(peers matched to adp-inherit's outcome); `run` trains them one after another, reusing finished
runs and resuming interrupted ones; `table` builds the result rows and the Markdown table.

May import: `adprune.train`, `adprune.runs`, `adprune.report`, `adprune.prune`, `adprune.errors`.
Not the command line.
"""
