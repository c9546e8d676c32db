"""The named choices of the method, kept free of torch so the command line can offer them at once."""

MODES = ("inherit", "reinit")
"""How a prune treats the channels it keeps: keep their weights, or re-initialise the new widths."""

IMPORTANCES = ("density", "entropy", "l1", "bn_scale")
"""Which channels a prune removes: the least dense (ADP), those whose firing carries the least
information (density nearest 0 or 1), the smallest filter L1 norms, the smallest BatchNorm scales."""

TRIGGERS = ("ranking", "density")
"""When a prune is due without fixed epochs: when the channels the plan would remove stopped changing,
or when every layer's density stopped moving."""
