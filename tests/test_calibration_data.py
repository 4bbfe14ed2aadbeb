"""Calibration data (tvmq/quantize/data.py): `.npz` files keyed by input name, first axis =
samples, checked against the model's inputs before anything runs. Every mistake a user can make
is an InputError that names the input and the problem."""

import gc
import warnings

import numpy as np
import pytest

from tvmq.errors import InputError
from tvmq.quantize.data import CalibrationData, load_calibration_data
from tvmq.tensors import TensorSpec

# A model with batch size 2: an image of 3 values and a mask of 4 token ids per sample.
INPUTS = (TensorSpec("image", (2, 3), "float32"), TensorSpec("mask", (2, 4), "int64"))


def samples(count, start=0):
    """`count` samples whose values tell which sample they are (image[i] = start + i)."""
    index = np.arange(start, start + count)
    return {
        "image": np.repeat(index[:, None], 3, axis=1).astype(np.float32),
        "mask": np.repeat(index[:, None], 4, axis=1).astype(np.int64),
    }


def load_error(source, inputs=INPUTS, num_samples=None) -> str:
    with pytest.raises(InputError) as caught:
        load_calibration_data(source, inputs, num_samples)
    return str(caught.value)


def input_error_or_fail(source, what, num_samples=None) -> str:
    """The InputError's message; any other outcome fails naming what escaped (a tvmq bug).

    np.load (numpy 2.4) leaves the file open when an .npz is not a valid zip; the handle is
    collected here with ResourceWarning ignored, not at interpreter exit where `-W error` would
    turn it into an error of the whole run."""
    message = failure = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            data = load_calibration_data(source, INPUTS, num_samples)
            failure = f"{what} was accepted: {data.num_samples} samples, {len(list(data.batches(INPUTS)))} batches"
        except InputError as err:
            message = str(err)
        except Exception as err:  # noqa: BLE001
            failure = f"{what} raised {type(err).__module__}.{type(err).__name__}: {err}"
        gc.collect()
    if failure:
        pytest.fail(f"{failure} (expected InputError)")
    return message


# --- where the data comes from -----------------------------------------------------------------


def test_an_npz_file_is_read_by_input_name(tmp_path):
    np.savez(tmp_path / "calib.npz", **samples(6))
    data = load_calibration_data(tmp_path / "calib.npz", INPUTS)
    assert isinstance(data, CalibrationData)
    assert data.num_samples == 6
    assert data.source == str(tmp_path / "calib.npz")
    np.testing.assert_array_equal(data.arrays["image"][:, 0], np.arange(6))
    assert data.arrays["mask"].dtype == np.int64


def test_a_folder_of_npz_files_is_concatenated_in_name_order(tmp_path):
    # Written out of order: b (samples 2..4) before a (samples 0..1); read a then b.
    np.savez(tmp_path / "b.npz", **samples(3, start=2))
    np.savez(tmp_path / "a.npz", **samples(2, start=0))
    (tmp_path / "notes.txt").write_text("not data")  # other files are ignored
    data = load_calibration_data(tmp_path, INPUTS)
    assert data.num_samples == 5
    assert data.source == str(tmp_path)
    np.testing.assert_array_equal(data.arrays["image"][:, 0], [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(data.arrays["mask"][:, 0], [0, 1, 2, 3, 4])


def test_a_dict_of_arrays_is_taken_as_is():
    data = load_calibration_data(samples(4), INPUTS)
    assert data.num_samples == 4
    np.testing.assert_array_equal(data.arrays["image"], samples(4)["image"])


def test_num_samples_keeps_the_first_samples():
    data = load_calibration_data(samples(10), INPUTS, num_samples=4)
    assert data.num_samples == 4
    np.testing.assert_array_equal(data.arrays["image"][:, 0], [0, 1, 2, 3])
    np.testing.assert_array_equal(data.arrays["mask"][:, 0], [0, 1, 2, 3])


def test_num_samples_beyond_the_data_keeps_all_of_it():
    assert load_calibration_data(samples(3), INPUTS, num_samples=100).num_samples == 3


# --- batches and digest ------------------------------------------------------------------------


def test_batches_have_the_models_shapes_and_drop_the_incomplete_last_one():
    # 7 samples at batch size 2: floor(7 / 2) = 3 batches, samples 0-1, 2-3, 4-5; sample 6 is left out.
    data = load_calibration_data(samples(7), INPUTS)
    batches = list(data.batches(INPUTS))
    assert len(batches) == 3
    for number, batch in enumerate(batches):
        assert list(batch) == ["image", "mask"]
        assert batch["image"].shape == (2, 3) and batch["image"].dtype == np.float32
        assert batch["mask"].shape == (2, 4) and batch["mask"].dtype == np.int64
        np.testing.assert_array_equal(batch["image"][:, 0], [2 * number, 2 * number + 1])


def test_batches_of_one_sample_reshape_to_the_models_input():
    # A model input of shape [1, 2, 2] takes samples of shape [2, 2]: 3 samples -> 3 batches.
    inputs = (TensorSpec("x", (1, 2, 2), "float32"),)
    data = load_calibration_data({"x": np.arange(12, dtype=np.float32).reshape(3, 2, 2)}, inputs)
    batches = list(data.batches(inputs))
    assert [b["x"].shape for b in batches] == [(1, 2, 2)] * 3
    np.testing.assert_array_equal(batches[2]["x"], [[[8, 9], [10, 11]]])


def test_the_digest_changes_when_one_value_changes():
    data = samples(4)
    before = load_calibration_data(data, INPUTS).digest()
    data["image"][3, 2] = 0.5
    assert load_calibration_data(data, INPUTS).digest() != before


def test_the_digest_ignores_the_order_of_the_dict():
    data = samples(4)
    forward = load_calibration_data({"image": data["image"], "mask": data["mask"]}, INPUTS)
    backward = load_calibration_data({"mask": data["mask"], "image": data["image"]}, INPUTS)
    assert forward.digest() == backward.digest()


def test_the_digest_is_the_same_for_a_file_and_the_dict_it_holds(tmp_path):
    np.savez(tmp_path / "calib.npz", **samples(4))
    from_file = load_calibration_data(tmp_path / "calib.npz", INPUTS).digest()
    assert from_file == load_calibration_data(samples(4), INPUTS).digest()


# --- every mistake is an InputError that names it ----------------------------------------------


def test_a_wrong_input_name_is_refused_by_listing_the_expected_names():
    data = samples(4)
    data["pixels"] = data.pop("image")
    message = load_error(data)
    assert "image, mask" in message  # the model's names
    assert "unknown: pixels" in message
    assert "missing: image" in message


def test_a_missing_input_is_named():
    data = samples(4)
    del data["mask"]
    message = load_error(data)
    assert "missing: mask" in message
    assert "unknown" not in message


def test_a_wrong_sample_shape_names_the_input_and_both_shapes():
    data = samples(4)
    data["image"] = np.zeros((4, 5), np.float32)
    message = load_error(data)
    assert "'image'" in message
    assert "[5]" in message  # the samples' shape
    assert "[2, 3]" in message  # the model's shape


def test_stacked_batches_name_the_sample_shape_the_model_expects():
    # A common mistake: saving model-shaped batches [batches, 2, 3] for a batch-2 model whose samples
    # are [3]. The message must say the samples should be [3]; today it reads "has samples of shape
    # [2, 3], the model takes [2, 3]", which contradicts itself (it prints the model's whole shape,
    # batch included, next to the samples' shape without the samples axis).
    inputs = (TensorSpec("image", (2, 3), "float32"),)
    message = load_error({"image": np.zeros((5, 2, 3), np.float32)}, inputs)
    assert "'image'" in message and "[2, 3]" in message
    assert "[3]" in message, f"the message does not name the expected sample shape [3]: {message!r}"


def test_a_wrong_dtype_names_the_input_and_both_dtypes():
    data = samples(4)
    data["image"] = data["image"].astype(np.float64)
    message = load_error(data)
    assert "'image'" in message and "float64" in message and "float32" in message


def test_data_without_samples_is_refused():
    empty = {"image": np.zeros((0, 3), np.float32), "mask": np.zeros((0, 4), np.int64)}
    message = load_error(empty)
    assert "no samples" in message


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_value_names_the_input_and_the_sample(bad):
    data = samples(6)
    data["image"][4, 1] = bad
    message = load_error(data)
    assert "'image'" in message
    assert "NaN or Inf" in message
    assert "sample 4" in message


def test_a_non_finite_value_in_a_folder_names_the_file_and_its_sample(tmp_path):
    np.savez(tmp_path / "a.npz", **samples(3))
    later = samples(3, start=3)
    later["image"][1, 0] = np.nan
    np.savez(tmp_path / "b.npz", **later)
    assert f"{tmp_path / 'b.npz'}: input 'image' has NaN or Inf in sample 1" in load_error(tmp_path)


def test_inputs_with_different_sample_counts_are_refused_with_the_counts():
    data = samples(4)
    data["mask"] = data["mask"][:3]
    message = load_error(data)
    assert "different sample counts" in message
    assert "'image': 4" in message and "'mask': 3" in message


def test_fewer_samples_than_the_batch_size_are_refused():
    message = load_error(samples(1))
    assert "1 samples are fewer than the model's batch size 2" in message


def test_an_unreadable_file_names_its_path(tmp_path):
    garbage = tmp_path / "calib.npz"
    garbage.write_text("this is not an npz file")
    message = load_error(garbage)
    assert str(garbage) in message


def test_a_missing_file_names_its_path(tmp_path):
    message = load_error(tmp_path / "nowhere.npz")
    assert str(tmp_path / "nowhere.npz") in message


def test_a_folder_without_npz_files_is_refused(tmp_path):
    (tmp_path / "data.npy").write_bytes(b"")
    message = load_error(tmp_path)
    assert str(tmp_path) in message and "no .npz files" in message


def test_files_of_a_folder_with_different_arrays_are_named(tmp_path):
    np.savez(tmp_path / "a.npz", **samples(2))
    np.savez(tmp_path / "b.npz", image=samples(2)["image"])
    message = load_error(tmp_path)
    assert str(tmp_path / "b.npz") in message and str(tmp_path / "a.npz") in message


# --- mistakes that escape as raw Python/numpy errors (bugs in data.py) -------------------------


def test_a_truncated_npz_file_is_an_input_error_naming_its_path(tmp_path):
    # A copy cut short (full disk, interrupted download): np.load raises zipfile.BadZipFile, which
    # is neither OSError nor ValueError, so _read_npz lets it escape.
    np.savez(tmp_path / "whole.npz", **samples(4))
    whole = (tmp_path / "whole.npz").read_bytes()
    cut = tmp_path / "cut.npz"
    cut.write_bytes(whole[: len(whole) // 2])
    assert str(cut) in input_error_or_fail(cut, "a truncated .npz")


def test_an_npy_file_given_for_an_npz_is_an_input_error_naming_its_path(tmp_path):
    # np.load returns a bare ndarray for .npy; `with np.load(...)` then raises TypeError.
    np.save(tmp_path / "image.npy", samples(4)["image"])
    assert str(tmp_path / "image.npy") in input_error_or_fail(tmp_path / "image.npy", "an .npy file")


def test_folder_files_with_different_sample_shapes_are_an_input_error(tmp_path):
    # np.concatenate raises a bare ValueError before _check sees the shapes.
    np.savez(tmp_path / "a.npz", **samples(2))
    wrong = samples(2)
    wrong["image"] = np.zeros((2, 5), np.float32)
    np.savez(tmp_path / "b.npz", **wrong)
    assert "'image'" in input_error_or_fail(tmp_path, "files of different sample shapes")


def test_a_scalar_array_in_an_npz_file_is_an_input_error(tmp_path):
    # np.concatenate of a 0-d array raises a bare ValueError (the same scalars in a dict give the
    # InputError "holds no samples").
    np.savez(tmp_path / "calib.npz", image=np.float32(1.0), mask=np.int64(1))
    input_error_or_fail(tmp_path / "calib.npz", "0-d arrays in an .npz")


@pytest.mark.parametrize("num_samples", [1, 0, -1])
def test_num_samples_below_the_batch_size_is_refused(num_samples):
    # 10 samples are plenty for batch size 2, but num_samples is applied after the checks: 1 keeps
    # a single sample (no batch at all, so calibration sees nothing), 0 keeps none, and -1 silently
    # drops the last sample (Python slicing) instead of being refused.
    input_error_or_fail(samples(10), f"num_samples={num_samples}", num_samples=num_samples)
