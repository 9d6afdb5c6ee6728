"""image_conversion: cv_bridge semantics (encoding, step, is_bigendian) against hand-built messages."""

from __future__ import annotations

import array

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from pite_ros.node.image_conversion import (
    ImageConversionError,
    _encoded_size,
    benchmark,
    compressed_to_rgb,
    image_to_rgb,
    rgb_to_image,
)

# A 2x3 RGB image: row 0 red, green, blue; row 1 white, black, grey.
RGB = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]], [[255, 255, 255], [0, 0, 0], [128, 128, 128]]], np.uint8)


def message(pixels: np.ndarray, kind: str, padding: int = 0, **fields) -> Image:
    """An Image of ``pixels`` (rows, row bytes) with ``padding`` junk bytes after each row."""
    height = pixels.shape[0]
    rows = pixels.reshape(height, -1)
    padded = np.concatenate([rows, np.full((height, padding), 77, np.uint8)], axis=1)
    msg = Image(height=height, width=pixels.shape[1], encoding=kind, step=padded.shape[1])
    msg.data = array.array("B", padded.tobytes())
    for name, value in fields.items():
        setattr(msg, name, value)
    return msg


@pytest.mark.parametrize("padding", [0, 5])
def test_every_encoding_gives_the_same_rgb_with_and_without_row_padding(padding: int) -> None:
    alpha = np.full((2, 3, 1), 9, np.uint8)
    sources = {
        "rgb8": RGB,
        "bgr8": RGB[..., ::-1],
        "rgba8": np.concatenate([RGB, alpha], axis=2),
        "bgra8": np.concatenate([RGB[..., ::-1], alpha], axis=2),
    }
    for encoding, pixels in sources.items():
        result = image_to_rgb(message(np.ascontiguousarray(pixels), encoding, padding))
        assert result.shape == (2, 3, 3) and result.dtype == np.uint8
        np.testing.assert_array_equal(result, RGB, err_msg=encoding)
    grey = np.array([[0, 100, 255], [7, 8, 9]], np.uint8)
    mono = image_to_rgb(message(grey, "mono8", padding))
    np.testing.assert_array_equal(mono, np.repeat(grey[..., None], 3, axis=2))


def test_rgb8_is_a_read_only_view_of_the_message_buffer() -> None:
    msg = message(RGB, "rgb8", padding=2)
    result = image_to_rgb(msg)
    assert np.shares_memory(result, np.frombuffer(msg.data, np.uint8))
    assert not result.flags.writeable


def test_longer_data_than_step_times_height_is_accepted() -> None:
    msg = message(RGB, "rgb8")
    msg.data.extend([1, 2, 3])
    np.testing.assert_array_equal(image_to_rgb(msg), RGB)


@pytest.mark.parametrize(
    "fields, field_named",
    [
        ({"encoding": "16UC1"}, "encoding '16UC1'"),
        ({"encoding": "RGB8"}, "encoding 'RGB8'"),
        ({"step": 8}, "step 8"),
        ({"width": 0}, "width is 0"),
        ({"height": 0}, "height is 0"),
        ({"is_bigendian": 2}, "is_bigendian is 2"),
        ({"height": 3}, "data is truncated: 18 bytes, but step 9 x height 3 = 27"),
    ],
)
def test_malformed_messages_raise_an_error_naming_the_field(fields: dict, field_named: str) -> None:
    with pytest.raises(ImageConversionError, match=field_named.replace("(", r"\(")):
        image_to_rgb(message(RGB, "rgb8", **fields))


def test_size_limit_refuses_enormous_images_before_reading_data() -> None:
    msg = Image(height=100_000, width=100_000, encoding="rgb8", step=300_000)
    with pytest.raises(ImageConversionError, match="exceeds max_pixels=40000000"):
        image_to_rgb(msg)
    with pytest.raises(ImageConversionError, match="6 pixels exceeds max_pixels=5"):
        image_to_rgb(message(RGB, "rgb8"), max_pixels=5)


def compressed(pixels: np.ndarray, extension: str, form: str) -> CompressedImage:
    ok, encoded = cv2.imencode(extension, cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))
    assert ok
    msg = CompressedImage(format=form)
    msg.data = array.array("B", encoded.tobytes())
    return msg


def test_compressed_png_is_exact_and_jpeg_close() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    np.testing.assert_array_equal(compressed_to_rgb(compressed(pixels, ".png", "png")), pixels)
    smooth = np.repeat(np.repeat(pixels[:3, :4] // 2 + 64, 10, axis=0), 10, axis=1)
    decoded = compressed_to_rgb(compressed(smooth, ".jpg", "rgb8; jpeg compressed bgr8"))
    assert decoded.shape == (30, 40, 3)
    assert np.abs(decoded.astype(int) - smooth).mean() < 8


def test_compressed_errors_name_the_field() -> None:
    pixels = np.zeros((30, 40, 3), np.uint8)
    with pytest.raises(ImageConversionError, match="format '16UC1; compressedDepth'"):
        compressed_to_rgb(compressed(pixels, ".png", "16UC1; compressedDepth"))
    with pytest.raises(ImageConversionError, match="format 'tiff'"):
        compressed_to_rgb(compressed(pixels, ".png", "tiff"))
    with pytest.raises(ImageConversionError, match="data is empty"):
        compressed_to_rgb(CompressedImage(format="jpeg"))
    garbage = CompressedImage(format="jpeg")
    garbage.data = array.array("B", b"not an image at all")
    with pytest.raises(ImageConversionError, match=r"data \(19 bytes\) does not decode as jpeg"):
        compressed_to_rgb(garbage)
    with pytest.raises(ImageConversionError, match="encoded width x height = 40 x 30 = 1200 pixels exceeds"):
        compressed_to_rgb(compressed(pixels, ".jpg", "jpeg"), max_pixels=1000)


def test_a_decompression_bomb_is_refused_from_its_png_header() -> None:
    # A PNG signature and an IHDR claiming 100000 x 100000, with nothing decodable after it.
    header = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR" + (100_000).to_bytes(4, "big") * 2 + b"\x08\x02\x00\x00\x00"
    msg = CompressedImage(format="png")
    msg.data = array.array("B", header)
    with pytest.raises(ImageConversionError, match="encoded width x height = 100000 x 100000"):
        compressed_to_rgb(msg)


def test_encoded_size_reads_png_and_jpeg_headers() -> None:
    pixels = np.zeros((30, 40, 3), np.uint8)
    for extension in (".png", ".jpg"):
        assert _encoded_size(cv2.imencode(extension, pixels)[1].tobytes()) == (40, 30)
    assert _encoded_size(b"GIF89a....") is None


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8"])
def test_rgb_to_image_round_trips_and_keeps_the_header(encoding: str) -> None:
    header = Header(frame_id="camera_optical")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    msg = rgb_to_image(RGB, header, encoding)
    assert (msg.width, msg.height, msg.step, msg.encoding, msg.is_bigendian) == (3, 2, 9, encoding, 0)
    assert msg.header == header
    np.testing.assert_array_equal(image_to_rgb(msg), RGB)
    if encoding == "bgr8":
        assert list(msg.data[:3]) == [0, 0, 255]


def test_rgb_to_image_refuses_what_it_cannot_encode() -> None:
    with pytest.raises(ValueError, match=r"\(2, 3\) uint8"):
        rgb_to_image(RGB[..., 0], Header())
    with pytest.raises(ValueError, match="encoding 'mono8'"):
        rgb_to_image(RGB, Header(), "mono8")


def test_benchmark_reports_every_encoding_and_size() -> None:
    figures = benchmark(sizes=((64, 48),), repeats=2)
    assert set(figures) == {f"{e}@64x48" for e in ("rgb8", "bgr8", "mono8", "rgba8", "bgra8", "rgb_to_image")}
    assert all(value > 0 for value in figures.values())


@pytest.mark.slow
def test_conversion_meets_the_one_millisecond_goal_at_vga() -> None:
    figures = benchmark(sizes=((640, 480),), repeats=200)
    assert figures["rgb8@640x480"] < 1.0 and figures["bgr8@640x480"] < 1.0, figures
