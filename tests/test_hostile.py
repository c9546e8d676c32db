"""Hostile input: pickles and damaged files in run directories, malformed JSON, NaN densities, and random
command lines. Every answer must be a result or one `AdpruneError` line, never a traceback or a hang.
"""

import contextlib
import dataclasses
import io
import json
import math
import os
import pickle
import shutil
import signal
import traceback
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st
from PIL import Image

import adprune
from adprune.cli import main
from adprune.errors import AdpruneError
from adprune.models import build_model
from adprune.prune.widths import DensityPlan
from adprune.runs import model_files as checkpoint
from adprune.train.config import TrainConfig
from adprune.train.config_file import validate_config

MARKER = "adprune-pwned"


class _Pwn:
    """Unpickling this runs code: it creates a marker file in the current directory."""

    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


def _pickles() -> dict[str, bytes]:
    buffer = io.BytesIO()
    torch.save({"weight": _Pwn()}, buffer)
    return {"pickle": pickle.dumps(_Pwn()), "torch.save": buffer.getvalue()}


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory) -> Path:
    """A run directory with a small pruned VGG-11 for 8x8 RGB images."""
    model = build_model("vgg11", in_channels=3, num_classes=2, image_size=8, width=0.0625)
    pruner = adprune.ADPruner(model, torch.zeros(2, 3, 8, 8), check=False)
    pruner.prune(1, {name: torch.linspace(0, 1, width) for name, width in pruner.widths.items()})
    out = tmp_path_factory.mktemp("saved")
    arch = {"model": "vgg11", "in_channels": 3, "num_classes": 2, "image_size": 8, "width": 0.0625}
    checkpoint.save_model(out, model, {**arch, "mean": [0.5] * 3, "std": [0.25] * 3}, pruner.widths)
    return out


@pytest.fixture
def run_copy(saved_run, tmp_path, monkeypatch) -> Path:
    """A private copy of `saved_run`, with the working directory (where a marker would land) beside it."""
    monkeypatch.chdir(tmp_path)
    return Path(shutil.copytree(saved_run, tmp_path / "run"))


# ------------------------------------------------------------------------------------------------
# Nothing in a run directory is unpickled


def test_the_planted_pickle_runs_code_when_unpickled(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pickle.loads(_pickles()["pickle"])
    assert Path(MARKER).exists()  # so the tests below, where no marker appears, show nothing ran


@pytest.mark.parametrize("kind", ["pickle", "torch.save"])
def test_a_pickle_posing_as_the_weights_is_refused_unrun(run_copy, kind):
    (run_copy / "model.safetensors").write_bytes(_pickles()[kind])
    with pytest.raises(AdpruneError, match=r"model\.safetensors \(a pickle or torch\.save file"):
        adprune.load(run_copy)
    assert not Path(MARKER).exists()


def test_pickles_beside_the_model_are_never_read(run_copy):
    for name in ("model.pt", "optimizer.pt", "checkpoints/epoch-0001/state.pt", "arch.pt"):
        (run_copy / name).parent.mkdir(parents=True, exist_ok=True)
        (run_copy / name).write_bytes(_pickles()["torch.save"])
    adprune.load(run_copy)
    assert not Path(MARKER).exists()


def test_no_torch_load_without_weights_only_in_the_package():
    for path in Path(adprune.__file__).parent.rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if "torch.load(" in line:
                assert "weights_only=True" in line, f"{path}:{number} unpickles: {line.strip()}"


@pytest.mark.parametrize("damage", ["truncated", "random", "empty", "directory"])
def test_damaged_weights_name_the_file(run_copy, damage):
    path = run_copy / "model.safetensors"
    data = path.read_bytes()
    damaged = {"truncated": data[: len(data) // 2], "random": os.urandom(len(data)), "empty": b""}
    path.unlink()
    if damage == "directory":
        path.mkdir()
    else:
        path.write_bytes(damaged[damage])
    with pytest.raises(AdpruneError, match=r"model\.safetensors.*damaged") as caught:
        adprune.load(run_copy)
    assert "\n" not in str(caught.value)


def test_weights_of_another_shape_name_both_files(run_copy):
    arch = json.loads((run_copy / "arch.json").read_text())
    first = next(iter(arch["widths"]))
    arch["widths"][first] -= 1
    (run_copy / "arch.json").write_text(json.dumps(arch))
    with pytest.raises(AdpruneError, match=r"model\.safetensors does not match .*arch\.json"):
        adprune.load(run_copy)


# ------------------------------------------------------------------------------------------------
# Malformed arch.json: refused with one line before anything is built


def _without(key):
    return lambda arch: {k: v for k, v in arch.items() if k != key}


def _with(**changes):
    return lambda arch: {**arch, **changes}


def _first_width(value):
    return lambda arch: {**arch, "widths": {**arch["widths"], next(iter(arch["widths"])): value}}


ARCH_DAMAGE = {
    "missing model": _without("model"),
    "missing widths": _without("widths"),
    "missing image_size": _without("image_size"),
    "string for int": _with(in_channels="3"),
    "float for int": _with(num_classes=2.0),
    "bool for int": _with(image_size=True),
    "null for int": _with(in_channels=None),
    "list for int": _with(num_classes=[2]),
    "list for widths": _with(widths=[4, 8]),
    "string width": _first_width("4"),
    "bool width": _first_width(True),
    "float width": _first_width(4.0),
    "zero width": _first_width(0),
    "negative width": _first_width(-3),
    "huge width": _first_width(10**12),
    "zero classes": _with(num_classes=0),
    "huge channels": _with(in_channels=10**12),
    "many channels at full size": _with(in_channels=65_536, image_size=4_096),
    "huge image": _with(image_size=10**9),
    "negative image": _with(image_size=-8),
    "huge classes": _with(num_classes=10**7),
    "multiplier inf": _with(width=math.inf),
    "multiplier nan": _with(width=math.nan),
    "multiplier 1e9": _with(width=1e9),
    "multiplier zero": _with(width=0.0),
    "multiplier negative": _with(width=-0.5),
    "multiplier bool": _with(width=True),
    "multiplier string": _with(width="0.5"),
    "too many parameters": _with(model="vgg19", width=64.0),
    "unknown model": _with(model="vgg12"),
    "unknown torchvision model": _with(model="tv:nope"),
    "model not a string": _with(model=11),
    "extra key": _with(garbage={"a": 1}),
    "short mean": _with(mean=[0.5]),
    "zero std": _with(std=[0.0, 0.1, 0.1]),
    "nan mean": _with(mean=[math.nan] * 3),
}


@pytest.mark.parametrize("damage", ARCH_DAMAGE.values(), ids=ARCH_DAMAGE.keys())
def test_malformed_arch_is_refused_before_building(run_copy, damage, monkeypatch):
    arch = json.loads((run_copy / "arch.json").read_text())
    (run_copy / "arch.json").write_text(json.dumps(damage(arch)))

    build = checkpoint.build_dense

    def meta_only(arch, device):
        assert device == "meta", "a model was built on a real device from a malformed arch.json"
        return build(arch, device)

    monkeypatch.setattr(checkpoint, "build_dense", meta_only)
    with pytest.raises(AdpruneError, match=r"arch\.json") as caught:
        adprune.load(run_copy)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "content",
    [b"\xff\xfe{\x00", b"{not json", b"[1, 2]", b"null", b"1" * 5000, b"[" * 100_000, b" " * (2 << 20)],
    ids=["not-utf8", "not-json", "array", "null", "5000-digit-int", "deeply-nested", "2MiB"],
)
def test_unreadable_arch_is_one_line(run_copy, content):
    (run_copy / "arch.json").write_bytes(content)
    with pytest.raises(AdpruneError, match=r"arch\.json") as caught:
        checkpoint.read_arch(run_copy)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("damage", "message"),
    [(_first_width(10**4), "outside 1"), (_with(widths={"nope": 3}), "does not have: nope")],
    ids=["wider-than-built", "unknown-group"],
)
def test_widths_the_model_cannot_take_name_arch_json(run_copy, damage, message):
    arch = json.loads((run_copy / "arch.json").read_text())
    (run_copy / "arch.json").write_text(json.dumps(damage(arch)))
    with pytest.raises(AdpruneError, match=rf"arch\.json: .*{message}"):
        adprune.load(run_copy)


# ------------------------------------------------------------------------------------------------
# Malformed config.json


TINY_CONFIG = dataclasses.asdict(TrainConfig(out="run", subset=8, epochs=1, batch_size=4, width=0.0625))
JSON_JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.lists(st.one_of(st.integers(), st.text(max_size=3), st.none()), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@settings(max_examples=60, deadline=None)
@given(
    changes=st.dictionaries(st.sampled_from([*TINY_CONFIG, "junk", ""]), JSON_JUNK, max_size=4),
    dropped=st.sets(st.sampled_from(list(TINY_CONFIG)), max_size=2),
    whole=st.one_of(st.none(), JSON_JUNK),
)
def test_validate_config_returns_options_or_one_error(changes, dropped, whole):
    obj = {k: v for k, v in {**TINY_CONFIG, **changes}.items() if k not in dropped}
    obj = obj if whole is None else whole
    try:
        values = validate_config(obj, "run/config.json")
    except AdpruneError as exc:
        assert str(exc).startswith("run/config.json") and "\n" not in str(exc)
        return
    assert TrainConfig(**values) is not None and set(values) == set(TINY_CONFIG)


def test_validate_config_accepts_what_train_writes_and_names_bad_keys():
    assert validate_config(json.loads(json.dumps(TINY_CONFIG)), "c.json") == TINY_CONFIG
    for key, value, message in [
        ("epochs", "3", "'epochs' must be of type int"),
        ("lr", None, "'lr' must be of type float"),
        ("prune_at", [1, "2"], "'prune_at' must be of type list\\[int\\] \\| None"),
        ("data_dir", "a\x00b", "'data_dir'"),
        ("overwrite", 1, "'overwrite' must be of type bool"),
        ("epochs", 0, "--epochs must be"),
    ]:
        with pytest.raises(AdpruneError, match=message):
            validate_config({**TINY_CONFIG, key: value}, "c.json")


# ------------------------------------------------------------------------------------------------
# A NaN density (a diverged layer) never deletes a layer


def test_nan_density_keeps_the_full_width():
    assert adprune.plan_width(math.nan, 17, min_channels=1) == 17


@pytest.mark.parametrize("how", ["argument", "attributes"])
def test_nan_densities_keep_their_groups_whole_through_the_pruner(how):
    model = build_model("vgg11", in_channels=3, num_classes=2, width=0.125)
    pruner = adprune.ADPruner(
        model, torch.zeros(2, 3, 32, 32), widths=DensityPlan(min_channels=1), check=False
    )
    before = pruner.widths
    diverged, partly, *rest = before
    densities = {name: torch.full((width,), 0.25) for name, width in before.items()}
    densities[diverged] = torch.full((before[diverged],), math.nan)
    densities[partly][0] = math.nan
    if how == "argument":
        pruner.prune(1, densities)
    else:
        pruner.channel_densities = densities
        pruner.densities = {name: float(d.mean()) for name, d in densities.items()}
        pruner.prune(1)
    after = pruner.widths
    assert after[diverged] == before[diverged] and after[partly] == before[partly]
    assert all(after[name] == math.ceil(0.25 * before[name]) for name in rest)
    assert all(width >= 1 for width in after.values())


# ------------------------------------------------------------------------------------------------
# Random command lines


EXAMPLE_SECONDS = 90
HOSTILE = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
}
TINY_TRAIN = [
    "--subset", "8", "--epochs", "1", "--batch-size", "4", "--model", "vgg11", "--width", "0.0625",
    "--dataset", "imagefolder", "--image-size", "8",
]  # fmt: skip
FLAGS = ["--no-progress", "--no-report"]
INTS = [
    "-1", "0", "1", "2", "3", "-0", "+2", " 2 ", "1.0", "1e3", "0x10", "٣", "", "x", str(10**30), "9" * 5000,
]  # fmt: skip
FLOATS = [
    "nan", "NaN", "inf", "-inf", "1e999", "-0.0", "0", "1e308", "1e-308", "-1", "0.5", "1", "2",
    "1e9", "", "abc", "1,5", "0x1p-2",
]  # fmt: skip
STRINGS = st.text(max_size=8).filter(lambda s: "\x00" not in s)  # an OS argv cannot hold NUL


def _values(*fixed: str) -> st.SearchStrategy[str]:
    """One of `fixed` (three times in four) or a random string."""
    return st.integers(0, 3).flatmap(lambda i: STRINGS if i == 0 else st.sampled_from(fixed))


TRAIN_OPTIONS = {
    **dict.fromkeys(
        ["--subset", "--batch-size", "--eval-batch-size", "--patience", "--min-channels", "--round-to",
         "--max-prunes", "--seed"],
        _values(*INTS),
    ),
    "--epochs": _values(*INTS),  # no large valid budgets: they are not hostile, only long
    "--image-size": _values("-1", "0", "1", "3", "8", "x", str(10**9), str(10**30)),
    **dict.fromkeys(
        ["--width", "--lr", "--momentum", "--weight-decay", "--label-smoothing", "--tol", "--min-reduction"],
        _values(*FLOATS),
    ),
    "--optimizer": _values("sgd", "adamw", "SGD", "adam"),
    "--prune": _values("adp", "none", "ADP"),
    "--mode": _values("inherit", "reinit", "prune"),
    "--model": _values(
        "vgg11", "VGG11", "resnet18", "vgg19", "resnet", "tv:nope", "tv:", "tv:resnet18", "vgg11 "
    ),
    "--dataset": _values(
        "imagefolder", "fashion-mnist", "mnist", "cifar10", "tinyimagenet", "nope", "ImageFolder"
    ),
    "--device": _values(
        "cpu", "auto", "cuda", "cuda:0", "cuda:-1", "cuda:99", "meta", "mps", "xla", "cpu:0", "cpu:7", "CUDA"
    ),
    "--ignore": _values(
        "features.0", "classifier", "features", ",", "nope", "features.0.weight", "a..b", "."
    ),
    "--prune-at": _values(
        "1", "0", "-1", "1,1", "2,1", "", ",", "a", "1e3", "١", "1,,2", " 1 , 2 ", "9" * 5000
    ),
}  # fmt: skip
TRAIN_FLAGS = ["--overwrite", "--tensorboard", "--no-progress", "--no-report", "--bogus", "-x", "--", "-h"]
GARBAGE = {
    "arch.json": b'{"model": 1}', "summary.json": b"\xff", "config.json": b"[]", "metrics.jsonl": b"{\n",
    "model.safetensors": b"PK",
}  # fmt: skip
PATHS = ["missing", "file", "empty", "garbage", "run", "run/arch.json", "", ".", "new.onnx", "missing/x"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """A tiny image folder (2 classes of 8x8 images) and a finished run trained on it."""
    root = tmp_path_factory.mktemp("world")
    rng = np.random.default_rng(0)
    for split, count in (("train", 4), ("val", 2)):
        for cls in ("a", "b"):
            (root / "data" / split / cls).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / "data" / split / cls / f"{i}.png")
    argv = ["train", *TINY_TRAIN, "--data-dir", str(root / "data"), *FLAGS, "--out", str(root / "run")]
    code, _, err = _cli(argv)
    assert code == 0, err
    return {"data": root / "data", "run": root / "run"}


@contextlib.contextmanager
def _time_limit(seconds: int):
    """Raise TimeoutError in the block after `seconds` (a hang fails the example, with its argv)."""

    def expire(*_):
        raise TimeoutError(f"no answer within {seconds}s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _cli(argv: list[str]) -> tuple[int, str, str]:
    """Run `adprune argv` in process: its exit code, stdout and stderr. Any escaping exception fails."""
    out, err = io.StringIO(), io.StringIO()
    try:
        with (
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
            _time_limit(EXAMPLE_SECONDS),
        ):
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse's --help
                code = exc.code
    except Exception:  # the point of the test: report any escape with its argv
        pytest.fail(f"adprune {argv!r} raised:\n{traceback.format_exc(limit=-6)}")
    return code, out.getvalue(), err.getvalue()


def _check_answer(argv: list[str]) -> int:
    """Run `adprune argv`; assert it exited 0, or 2 with one 'adprune: error:' line; return the code."""
    code, _, err = _cli(argv)
    if currently_in_test_context():
        event(f"{argv[0]} exit {code}")
    lines = err.splitlines()
    if code == 2:
        assert len(lines) == 1 and lines[0].startswith("adprune: error:"), f"adprune {argv!r}: {err!r}"
    else:
        assert code == 0, f"adprune {argv!r} exited {code}: {err!r}"
    return code


def _path(token: str, root: Path, world: dict[str, Path]) -> str:
    """A path under `root` for a token of PATHS (building what it names) or for a random name."""
    if token in ("", "."):
        return token
    if token == "file":
        (root / "file").write_text("not a run")
    elif token == "empty":
        (root / "empty").mkdir(exist_ok=True)
    elif token == "garbage":
        (root / "garbage").mkdir(exist_ok=True)
        for name, content in GARBAGE.items():
            (root / "garbage" / name).write_bytes(content)
    elif token.startswith("run") and not (root / "run").exists():
        shutil.copytree(world["run"], root / "run")
    name = token.replace("/", "_").replace("\x00", "") if token not in PATHS else token
    return str(root / (name if name not in ("", ".", "..") else "dot"))


@st.composite
def _train_argv(draw, root: Path, world: dict[str, Path]) -> list[str]:
    argv = ["train", *TINY_TRAIN, "--data-dir", str(world["data"]), *FLAGS]
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["option", "option", "option", "flag", "path", "junk"]))
        if kind == "option":
            option = draw(st.sampled_from(sorted(TRAIN_OPTIONS)))
            argv += [option, draw(TRAIN_OPTIONS[option])]
        elif kind == "flag":
            argv.append(draw(st.sampled_from(TRAIN_FLAGS)))
        elif kind == "path":
            option = draw(st.sampled_from(["--data-dir", "--out", "--resume"]))
            argv += [option, _path(draw(st.one_of(st.sampled_from(PATHS), STRINGS)), root, world)]
        else:
            argv.append(draw(STRINGS))
    if draw(st.integers(0, 9)):  # one example in ten has no --out
        argv += ["--out", str(root / "out")]
    return argv


CRASHES_FOUND = [  # each once escaped as a traceback; kept as fixed examples
    ["--lr", "1e308"],
    ["--label-smoothing", "1e308"],
    ["--image-size", str(10**9)],
    ["--device", "meta"],
    ["--batch-size", "1"],
    ["--patience", str(10**30)],
    ["--epochs", str(10**30)],
    ["--width", "1e9"],
    ["--out", "new\nline"],
]


@pytest.mark.parametrize("extra", CRASHES_FOUND, ids=[" ".join(e)[:30] for e in CRASHES_FOUND])
def test_command_lines_that_once_crashed(extra, world, tmp_path):
    argv = ["train", *TINY_TRAIN, "--data-dir", str(world["data"]), *FLAGS, "--out", str(tmp_path / "o")]
    if extra[0] == "--out":  # an existing file: the error names the path
        (tmp_path / extra[1]).write_text("")
        extra = ["--out", str(tmp_path / extra[1])]
    assert _check_answer([*argv, *extra]) == 2


@pytest.mark.parametrize(
    "content",
    [
        b"1" * 5000,
        b"[" * 100_000,
        b"directory",
        b'{"epochs": "3"}',
        json.dumps({**TINY_CONFIG, "seed": None}),
    ],
    ids=["5000-digits", "deeply-nested", "directory", "partial", "null-seed"],
)
def test_resume_configs_that_once_crashed(content, tmp_path):
    if content == b"directory":
        (tmp_path / "config.json").mkdir()
    else:
        (tmp_path / "config.json").write_bytes(content if isinstance(content, bytes) else content.encode())
    assert _check_answer(["train", "--resume", str(tmp_path)]) == 2


@settings(max_examples=80, **HOSTILE)
@given(data=st.data())
def test_random_train_command_lines_answer_cleanly(data, world, tmp_path_factory):
    root = tmp_path_factory.mktemp("ex")
    _check_answer(data.draw(_train_argv(root, world)))


@settings(max_examples=30, **HOSTILE)
@given(
    changes=st.dictionaries(st.sampled_from(list(TINY_CONFIG)), JSON_JUNK, max_size=3),
    raw=st.one_of(st.none(), st.binary(max_size=16), st.sampled_from([b"1" * 5000, b"[" * 100_000, b"dir"])),
)
def test_resuming_from_a_random_config_answers_cleanly(changes, raw, world, tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    config = {**TINY_CONFIG, "dataset": "imagefolder", "image_size": 8, "data_dir": str(world["data"])}
    config.update({"progress": False, "report": False, **changes})
    if raw == b"dir":
        (root / "config.json").mkdir()
    else:
        (root / "config.json").write_bytes(raw if raw is not None else json.dumps(config).encode())
    _check_answer(["train", "--resume", str(root)])


@settings(max_examples=40, **HOSTILE)
@given(data=st.data())
def test_random_compare_report_export_command_lines_answer_cleanly(
    data, world, tmp_path_factory, monkeypatch
):
    root = tmp_path_factory.mktemp("paths")
    monkeypatch.chdir(root)  # `report` writes ./report by default
    paths = st.one_of(st.sampled_from(PATHS), STRINGS).map(lambda token: _path(token, root, world))
    command = data.draw(st.sampled_from(["compare", "report", "export"]))
    argv = [command, *data.draw(st.lists(paths, min_size=0, max_size=3))]
    if command == "compare" and data.draw(st.booleans()):
        argv += ["--title", data.draw(STRINGS)]
    if command == "report" and data.draw(st.booleans()):
        argv += ["--out", data.draw(paths)]
    if command == "export":
        if data.draw(st.integers(0, 4)):
            argv += ["--format", data.draw(_values("onnx", "torchscript", "ONNX", "tflite"))]
        if data.draw(st.integers(0, 4)):
            argv += ["--out", data.draw(paths)]
    _check_answer(argv)


def test_export_is_a_subcommand(world, tmp_path):
    out = tmp_path / "model.pt"
    code = _check_answer(["export", str(world["run"]), "--format", "torchscript", "--out", str(out)])
    assert code == 0 and out.is_file(), "register export_cli.add_parser in cli.build_parser"
