"""TensorBoard logging writes each epoch's scalars, densities and widths at step = epoch."""

from adprune.train.tensorboard import SCALARS, log_epoch


class RecordingWriter:
    def __init__(self):
        self.scalars, self.flushes = [], 0

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))

    def flush(self):
        self.flushes += 1


def test_log_epoch_writes_every_scalar_density_and_width():
    record = {key: float(i) for i, key in enumerate(SCALARS)}
    record.update(epoch=3, density={"features.0": 0.5, "features.4": 0.25}, widths_after={"features.0": 8})
    writer = RecordingWriter()
    log_epoch(writer, record)
    assert writer.scalars == [
        *((f"adprune/{key}", float(i), 3) for i, key in enumerate(SCALARS)),
        ("density/features.0", 0.5, 3),
        ("density/features.4", 0.25, 3),
        ("width/features.0", 8, 3),
    ]
    assert writer.flushes == 1
