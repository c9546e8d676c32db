"""The method: activation-density pruning in training, usable from any training loop.

Holds channel groups (`groups`, over Torch-Pruning's graph patched in `tp_compat`), the density
monitor (`density`), the width plan and trigger (`plan`), channel removal (`surgery`, `trial`),
peer rankings and parameter targets (`importance`, `targets`), the cost ledger (`cost`) and
`ADPruner` (`pruner`), which ties them together once per epoch.

May import: torch, torch-pruning, and `adprune.errors`. Nothing else of adprune (the harness of
training, run files, reports and the command line builds on this package, never the reverse).
"""
