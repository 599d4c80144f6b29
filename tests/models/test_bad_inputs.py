"""`kiln run` on bad models and bad inputs: a non-zero exit, a message naming what is wrong, no crash."""

import numpy as np
import pytest

import builders
from harness import assert_clean_exit, run_kiln, save_model


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return save_model(builders.inception_dense(), tmp_path_factory.mktemp("model"))


def good_image(directory, name="image.npy", shape=(1, 3, 32, 32), dtype=np.float32):
    path = directory / name
    np.save(path, np.random.default_rng(0).standard_normal(shape).astype(dtype))
    return path


def run_args(model, out_dir, *inputs):
    """`kiln run MODEL --input NAME=FILE... --output-dir OUT_DIR/o`; inputs are (name, path) pairs."""
    args = ["run", model]
    for name, path in inputs:
        args += ["--input", f"{name}={path}"]
    return args + ["--output-dir", out_dir / "o"]


def expect_failure(args, *names):
    proc = run_kiln(args)
    assert_clean_exit(proc)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, f"kiln accepted bad input:\n{output}"
    for name in names:
        assert str(name) in output, f"the message does not name '{name}':\n{output}"
    return output


def test_good_run_works(model_path, tmp_path):
    # The baseline for every test below: with good inputs the same command succeeds.
    proc = run_kiln(run_args(model_path, tmp_path, ("image", good_image(tmp_path))))
    assert_clean_exit(proc)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "o" / "features.npy").exists()


def test_missing_model_file(tmp_path):
    missing = tmp_path / "no_such_model.onnx"
    expect_failure(run_args(missing, tmp_path, ("image", good_image(tmp_path))), "no_such_model.onnx")


@pytest.mark.parametrize("fraction", [0.5, 0.9, 0.01])
def test_truncated_model(model_path, tmp_path, fraction):
    data = model_path.read_bytes()
    bad = tmp_path / "truncated.onnx"
    bad.write_bytes(data[: int(len(data) * fraction)])
    expect_failure(run_args(bad, tmp_path, ("image", good_image(tmp_path))), "truncated.onnx")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_bytes_model(tmp_path, seed):
    bad = tmp_path / "random.onnx"
    bad.write_bytes(np.random.default_rng(seed).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    expect_failure(run_args(bad, tmp_path, ("image", good_image(tmp_path))), "random.onnx")


def test_wrong_input_shape(model_path, tmp_path):
    wrong = good_image(tmp_path, shape=(1, 3, 16, 16))
    expect_failure(run_args(model_path, tmp_path, ("image", wrong)), "image")


def test_wrong_input_rank(model_path, tmp_path):
    wrong = good_image(tmp_path, shape=(3, 32, 32))
    expect_failure(run_args(model_path, tmp_path, ("image", wrong)), "image")


@pytest.mark.parametrize("dtype", [np.float64, np.int64, np.float16])
def test_wrong_input_dtype(model_path, tmp_path, dtype):
    wrong = good_image(tmp_path, dtype=dtype)
    expect_failure(run_args(model_path, tmp_path, ("image", wrong)), "image")


def test_unknown_input_name(model_path, tmp_path):
    img = good_image(tmp_path)
    expect_failure(run_args(model_path, tmp_path, ("image", img), ("bogus_input", img)), "bogus_input")


def test_missing_input_file(model_path, tmp_path):
    expect_failure(run_args(model_path, tmp_path, ("image", tmp_path / "absent.npy")), "absent.npy")


def test_corrupt_input_file(model_path, tmp_path):
    bad = tmp_path / "corrupt.npy"
    bad.write_bytes(good_image(tmp_path).read_bytes()[:100])
    expect_failure(run_args(model_path, tmp_path, ("image", bad)), "corrupt.npy")


def test_inconsistent_symbolic_dims(tmp_path):
    # hidden binds batch=2, seq=5; a mask of seq 6 contradicts it.
    model = save_model(builders.transformer_encoder(), tmp_path)
    rng = np.random.default_rng(0)
    hidden, mask = tmp_path / "hidden.npy", tmp_path / "mask.npy"
    np.save(hidden, rng.standard_normal((2, 5, 32)).astype(np.float32))
    np.save(mask, np.ones((2, 6), np.float32))
    expect_failure(run_args(model, tmp_path, ("hidden", hidden), ("mask", mask)), "mask")
