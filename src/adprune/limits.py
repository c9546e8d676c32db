"""Sanity bounds on sizes, shared by the option checks of a run and the checks of the files it writes.

They reject typos and damaged or hostile files, not real models: they are far above any CNN adprune
trains. Kept free of torch so the command line can check options before importing it.
"""

MAX_CHANNELS = 65_536
"""Input channels of an image and the width of any channel group."""
MAX_IMAGE_SIZE = 4_096
"""Side of an input image, in pixels."""
MAX_INPUT_VALUES = 1 << 26
"""Values in one input (channels x side x side)."""
MAX_CLASSES = 1_000_000
"""Classes of a dataset."""
MAX_WIDTH_MULTIPLIER = 64.0
"""The channel multiplier of our VGG and ResNet models."""
MAX_PARAMETERS = 1 << 31
"""Parameters of a dense model that `adprune.load` builds before shrinking it."""
