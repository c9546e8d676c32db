"""Reports on finished (or running) runs and bench results: tables, plots and the HTML page.

`figures` defines every derived figure once (wall times, reduction factors, accuracy deltas);
`compare` prints runs side by side; `inputs` reads run directories and bench files; `plots` draws
the PNG figures; `html` assembles the self-contained report page.

May import: `adprune.runs` (file names, JSON reading, atomic writes) and `adprune.errors`.
Not torch, the method, training, the bench or the command line.
"""
