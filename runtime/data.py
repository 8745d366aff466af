"""Datasets for search and training: scikit-learn's bundled digits, or the user's own `.npz`.

Nothing is downloaded. The test split is fixed (seed 0) independently of the search seed, so
accuracies from different runs are measured on the same images; the search splits the training
part again into a weight half and an architecture half, as DARTS does.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dasc.errors import Span, UsageError
from dasc.fsutil import input_problem

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


@dataclass(frozen=True)
class Dataset:
    """Images as float32 NCHW standardized with training statistics, labels as int64."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1

    def digest(self) -> str:
        """A hash of the arrays a run trains and tests on, so a resume can tell that a .npz
        was replaced in between (same shapes, other images) instead of silently drifting."""
        import hashlib

        h = hashlib.sha256()
        for array in (self.x_train, self.y_train, self.x_test, self.y_test):
            h.update(f"{array.dtype}{array.shape}".encode())
            h.update(np.ascontiguousarray(array).tobytes())
        return h.hexdigest()


def check_same_data(data: Dataset, recorded: object, spec: str, run_dir: str,
                    command: str) -> None:
    """Refuse to resume on data other than the run started with (None: an older run)."""
    if recorded is not None and recorded != data.digest():
        raise UsageError(f"the data {spec} has changed since the {command} in {run_dir} started",
                         Span.of_file(spec) if spec != "digits" else None,
                         f"put back the file the {command} started with, or start a new "
                         f"{command} (--force)")


def _standardize(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = train.mean(axis=(0, 2, 3), keepdims=True)
    std = train.std(axis=(0, 2, 3), keepdims=True) + 1e-6
    return ((train - mean) / std).astype(np.float32), ((test - mean) / std).astype(np.float32)


def _stratified_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        n_test = int(round(len(idx) * test_fraction))
        test_idx.extend(idx[:n_test])
        train_idx.extend(idx[n_test:])
    return np.sort(np.array(train_idx)), np.sort(np.array(test_idx))


def load_digits_dataset() -> Dataset:
    """8×8 grey digits (1,797 images, 10 classes) shipped inside scikit-learn; 20% held out."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.astype(np.float32)[:, None, :, :] / 16.0
    y = bunch.target.astype(np.int64)
    train, test = _stratified_split(y, 0.2, seed=0)
    x_train, x_test = _standardize(x[train], x[test])
    return Dataset("digits", x_train, y[train], x_test, y[test])


def _as_nchw(array: np.ndarray, key: str, where: str) -> np.ndarray:
    if array.ndim == 3:
        array = array[:, None, :, :]
    if array.ndim != 4:
        raise UsageError(f"{key} in {where} has shape {array.shape}, expected (N, C, H, W) or (N, H, W)",
                         Span.of_file(where), "store images as a 4-d (N, C, H, W) array")
    return array.astype(np.float32)


def load_npz_dataset(path: str) -> Dataset:
    """A user's `.npz` with x_train, y_train, x_test, y_test (no pickled objects allowed)."""
    file = Path(path)
    span = Span.of_file(path)
    problem = input_problem(file)
    if problem:
        raise UsageError(f"data file {path} {problem}", span,
                         "pass --data digits or the path of an existing .npz file")
    try:
        with np.load(file, allow_pickle=False) as npz:
            missing = [k for k in NPZ_KEYS if k not in npz.files]
            if missing:
                raise UsageError(f"{path} lacks {', '.join(missing)}", span,
                                 f"save the arrays with np.savez(path, {', '.join(k + '=...' for k in NPZ_KEYS)})")
            arrays = {k: npz[k] for k in NPZ_KEYS}
    except UsageError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise UsageError(f"{path} is not a readable .npz file ({exc.__class__.__name__})", span,
                         "re-create it with numpy.savez; object arrays are not accepted") from None
    for key in NPZ_KEYS:  # strings or complex numbers would fail (or silently lose) in astype
        kinds = "iu" if key.startswith("y") else "biuf"
        if arrays[key].dtype.kind not in kinds:
            raise UsageError(f"{path}: {key} holds {arrays[key].dtype} values", span,
                             "images must be numbers and labels integers 0 .. classes-1")
    x_train = _as_nchw(arrays["x_train"], "x_train", path)
    x_test = _as_nchw(arrays["x_test"], "x_test", path)
    y_train = arrays["y_train"].astype(np.int64).reshape(-1)
    y_test = arrays["y_test"].astype(np.int64).reshape(-1)
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise UsageError(f"{path}: images and labels differ in number", span,
                         "x_train and y_train (and x_test, y_test) must have the same length")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise UsageError(f"{path}: train and test images differ in shape", span,
                         "use one image shape for both splits")
    if len(x_train) < 4 or len(x_test) < 1:
        raise UsageError(f"{path}: too few examples ({len(x_train)} train, {len(x_test)} test)",
                         span, "the search needs at least 4 training and 1 test example")
    if not (np.isfinite(x_train).all() and np.isfinite(x_test).all()):
        raise UsageError(f"{path}: images contain NaN or inf", span, "clean the data first")
    if y_train.min() < 0 or y_test.min() < 0:
        raise UsageError(f"{path}: negative labels", span, "labels must be 0 .. classes-1")
    x_train, x_test = _standardize(x_train, x_test)
    return Dataset(file.stem, x_train, y_train, x_test, y_test)


def load_dataset(spec: str) -> Dataset:
    """`digits` or the path of a `.npz` file."""
    if spec == "digits":
        return load_digits_dataset()
    return load_npz_dataset(spec)


def check_fits(data: Dataset, input_shape: tuple[int, int, int], classes: int | None,
               span: Span | None) -> None:
    """The space must take the data's images and produce at least as many logits as classes."""
    if tuple(input_shape) != data.shape:
        raise UsageError(
            f"the space takes inputs of shape {list(input_shape)} but {data.name} images are "
            f"{list(data.shape)}", span,
            "change the space's `input` declaration (or its parameters with --set) to match")
    if classes is not None and classes < data.classes:
        raise UsageError(f"the space outputs {classes} logits but {data.name} has "
                         f"{data.classes} classes", span,
                         f"set the classifier width to {data.classes} (e.g. --set classes={data.classes})")
