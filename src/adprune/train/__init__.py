"""Training: the harness that runs the method on a dataset from the command line or the bench.

`config` declares every option once (`TrainConfig`); `config_file` checks options read from JSON;
`run` builds a run (data, model, optimizer, pruner) or restores it from a checkpoint; `loop` trains
it epoch by epoch and writes the run directory; `optimizers`, `distributed` and `tensorboard` serve
the loop; `data` holds one module per dataset format and the in-memory batch loader.

May import: `adprune.prune`, `adprune.models`, `adprune.runs`, `adprune.errors`, `adprune.limits`,
and `adprune.report` only to write a finished run's report. Not the bench or the command line.
"""
