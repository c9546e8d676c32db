"""The method: activation-density pruning in training, usable from any training loop.

Each decision lives in one module: channel groups (`groups`, over Torch-Pruning's graph patched in
`tp_compat`; `blocks`, `readers`), the density monitor (`density`), when to prune (`triggers`), how
wide (`widths`), which channels stay (`importance`), THE choice of channel indices (`selection`),
fading out with BatchNorm re-estimation (`fade`), the cut (`surgery`, checked by `trial`), the cost
ledger (`cost`, `events`), every option declared once (`options`), and `ADPruner` (`pruner`), which
wires them together once per epoch.

May import: torch, torch-pruning, and `adprune.errors`. Nothing else of adprune (the harness of
training, run files, reports and the command line builds on this package, never the reverse).
"""
