import numpy as np
import pytest

from reid.preprocess import IMAGENET_MEAN, IMAGENET_STD, crops_to_array, crops_to_tensor


def test_resizes_converts_to_rgb_and_normalises() -> None:
    crop = np.zeros((50, 20, 3), np.uint8)
    crop[..., 0] = 255  # pure blue in BGR
    out = crops_to_array([crop, np.full((10, 10, 3), 128, np.uint8)], (32, 16))
    assert out.shape == (2, 3, 32, 16) and out.dtype == np.float32
    expected_rgb = (np.array([0.0, 0.0, 1.0]) - IMAGENET_MEAN) / IMAGENET_STD
    np.testing.assert_allclose(out[0, :, 5, 5], expected_rgb, rtol=1e-5)
    assert crops_to_tensor([crop], (32, 16)).shape == (1, 3, 32, 16)


@pytest.mark.parametrize(
    ("crops", "message"),
    [
        ([], "no crops"),
        ([np.zeros((4, 4, 3), np.float32)], "crop 0 has dtype float32"),
        ([np.zeros((4, 4, 3), np.uint8), np.zeros((0, 4, 3), np.uint8)], "crop 1 is empty"),
        ([np.zeros((4, 4), np.uint8)], "expected HxWx3"),
        (["image.jpg"], "crop 0 is a str"),
    ],
)
def test_bad_crops_are_named(crops, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        crops_to_array(crops, (32, 16))
