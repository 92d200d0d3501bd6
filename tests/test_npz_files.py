"""Chunk and effects files (``results.write_npz``): every array reads back exactly, large float
arrays are stored uncompressed and everything else deflated, and a damaged file is caught."""

import zipfile

import numpy as np
import pytest

from deepmr_kipoi import results


def test_npz_arrays_read_back_exactly_large_floats_stored(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        "samples": rng.normal(size=(4, 3, 300, 200)).astype(np.float32),  # 2.9 MB: stored
        "estimate": np.where(rng.random((2, 50, 50)) < 0.3, np.nan, rng.normal(size=(2, 50, 50))),
        "mask": rng.random((300, 100)) > 0.5,
        "names": np.asarray(["a", "bb", "ccc"]),
        "key": np.asarray("0123abcd"),
        "n": np.asarray(7),
    }
    path = results.write_npz(tmp_path / "x.npz", arrays)
    back = results.read_npz(path)
    assert set(back) == set(arrays)
    for name, a in arrays.items():
        assert back[name].dtype == a.dtype and back[name].shape == a.shape
        np.testing.assert_array_equal(back[name], a)
    kinds = {i.filename: i.compress_type for i in zipfile.ZipFile(path).infolist()}
    assert kinds["samples.npy"] == zipfile.ZIP_STORED
    assert all(kinds[f"{n}.npy"] == zipfile.ZIP_DEFLATED for n in arrays if n != "samples")
    # a flipped byte inside the stored array fails the member's CRC on reading
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises((zipfile.BadZipFile, ValueError, OSError)):
        results.read_npz(path)
