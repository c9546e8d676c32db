"""The file formats a run's model exports to, named without importing torch (the command line offers
them before any heavy import)."""

FORMATS = ("onnx", "torchscript")
