"""Run files: everything a run leaves on disk, written crash-safely and read back without trust.

`atomic` is the one place that writes files (atomic files, atomic directories, synced appends);
`rundir` holds the run directory's config, per-epoch metrics and summary; `model_files` the final
model (`model.safetensors` + `arch.json`, read by `adprune.load`); `checkpoints` the per-epoch
training state that `--resume` continues from; `export` turns a run's model into ONNX or TorchScript.

May import: `adprune.prune` (to shrink a model to saved widths), `adprune.models` (to rebuild a
model by name), `adprune.errors` and `adprune.limits`. Not training, reports, the bench or the CLI.
"""
