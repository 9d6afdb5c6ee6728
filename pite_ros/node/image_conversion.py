"""ROS image messages to RGB arrays and back, with cv_bridge's semantics in NumPy.

cv_bridge is missing from the PyPI ROS wheels and its PyPI port breaks on NumPy 2
(docs/environment.md), so the node converts here. Semantics follow cv_bridge's
``imgmsg_to_cv2(msg, "rgb8")``: ``encoding`` names the channel layout (REP 104 /
``sensor_msgs/image_encodings.hpp``), ``step`` is the row length in bytes (rows may be padded
beyond ``width * channels``), ``data`` holds ``step * height`` bytes (longer data is accepted,
as cv_bridge does, and the excess ignored). ``is_bigendian`` only matters for multi-byte
channels; the 8-bit encodings accepted here ignore it, but a value other than 0/1 marks a
corrupt message and is refused.

Speed: ``rgb8`` is a zero-copy view of the message buffer (``np.frombuffer`` + strides); the
other encodings take one ``cv2.cvtColor`` pass. Every malformed input raises
``ImageConversionError`` naming the field, so the node counts it and goes on.

The functions read messages by duck typing (``height``, ``width``, ``encoding``, ...), so the
dynamic messages that ``mcap_ros2`` decodes from bags convert exactly like rclpy's.
"""

from __future__ import annotations

import array
import struct
import time

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

# A 40-Mpixel RGB frame is 120 MB; anything larger from a camera topic is a corrupt header.
DEFAULT_MAX_PIXELS = 40_000_000

# encoding -> (channels, cv2 conversion to RGB or None when the bytes already are RGB)
_DECODERS: dict[str, tuple[int, int | None]] = {
    "rgb8": (3, None),
    "bgr8": (3, cv2.COLOR_BGR2RGB),
    "mono8": (1, cv2.COLOR_GRAY2RGB),
    "rgba8": (4, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, cv2.COLOR_BGRA2RGB),
}
# encoding -> cv2 conversion from RGB (None: keep the bytes)
_ENCODERS: dict[str, int | None] = {"rgb8": None, "bgr8": cv2.COLOR_RGB2BGR}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers carry the image size; C4 (DHT), C8 (JPG) and CC (DAC) do not.
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


class ImageConversionError(ValueError):
    """An image message cannot be converted; the message names the offending field."""


def _check_size(width: int, height: int, max_pixels: int, what: str = "") -> None:
    if width <= 0:
        raise ImageConversionError(f"{what}width is {width}: the image is empty")
    if height <= 0:
        raise ImageConversionError(f"{what}height is {height}: the image is empty")
    if width * height > max_pixels:
        raise ImageConversionError(
            f"{what}width x height = {width} x {height} = {width * height} pixels exceeds max_pixels={max_pixels}"
        )


def image_to_rgb(msg: Image, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """``(height, width, 3)`` uint8 RGB of a ``sensor_msgs/Image``.

    For ``rgb8`` the result is a read-only view of ``msg.data`` (no copy; rows keep the
    message's ``step``); copy it before writing. Raises ``ImageConversionError`` for an
    unsupported ``encoding``, zero or oversized ``width``/``height``, ``step`` shorter than a
    row, truncated ``data`` or an ``is_bigendian`` that is neither 0 nor 1.
    """
    width, height, step = int(msg.width), int(msg.height), int(msg.step)
    _check_size(width, height, max_pixels)
    decoder = _DECODERS.get(msg.encoding)
    if decoder is None:
        raise ImageConversionError(
            f"encoding '{msg.encoding}' is not supported (supported: {', '.join(_DECODERS)})"
        )
    channels, conversion = decoder
    if int(msg.is_bigendian) not in (0, 1):
        raise ImageConversionError(f"is_bigendian is {msg.is_bigendian}: must be 0 or 1")
    if step < width * channels:
        raise ImageConversionError(
            f"step {step} is shorter than a row: width {width} x {channels} channels of {msg.encoding} "
            f"= {width * channels} bytes"
        )
    buffer = np.frombuffer(msg.data, dtype=np.uint8)
    if buffer.size < step * height:
        raise ImageConversionError(
            f"data is truncated: {buffer.size} bytes, but step {step} x height {height} = {step * height}"
        )
    rows = buffer[: step * height].reshape(height, step)[:, : width * channels]
    pixels = rows.reshape(height, width, channels) if channels > 1 else rows
    if conversion is None:
        pixels.flags.writeable = False
        return pixels
    return cv2.cvtColor(pixels, conversion)


def _encoded_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from a PNG or JPEG header without decoding, or None if unknown.

    Lets the size limit refuse a decompression bomb before ``cv2.imdecode`` allocates it.
    """
    if data[:8] == _PNG_SIGNATURE and data[12:16] == b"IHDR" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:2] != b"\xff\xd8":
        return None
    index = 2
    while index + 4 <= len(data):
        if data[index] != 0xFF:
            return None
        marker = data[index + 1]
        if marker == 0xFF:  # fill byte
            index += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # standalone markers have no length
            index += 2
            continue
        if marker in _JPEG_SOF and index + 9 <= len(data):
            height, width = struct.unpack(">HH", data[index + 5 : index + 9])
            return width, height
        index += 2 + struct.unpack(">H", data[index + 2 : index + 4])[0]
    return None


def compressed_to_rgb(msg: CompressedImage, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """``(height, width, 3)`` uint8 RGB of a ``sensor_msgs/CompressedImage`` (JPEG or PNG).

    ``format`` is ``"jpeg"``/``"png"`` or image_transport's ``"<encoding>; jpeg compressed
    <encoding>"``; the bytes themselves decide the codec (as cv_bridge does). Depth images
    (``compressedDepth``) and other formats are refused; so are sizes above ``max_pixels``,
    read from the header before decoding.
    """
    form = msg.format.lower()
    if "compresseddepth" in form or (form and not any(name in form for name in ("jpeg", "jpg", "png"))):
        raise ImageConversionError(f"format '{msg.format}' is not supported (supported: jpeg, png)")
    data = bytes(msg.data)
    if not data:
        raise ImageConversionError("data is empty")
    size = _encoded_size(data)
    if size is not None:
        _check_size(*size, max_pixels, what="encoded ")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ImageConversionError(f"data ({len(data)} bytes) does not decode as {msg.format or 'an image'}")
    _check_size(image.shape[1], image.shape[0], max_pixels, what="decoded ")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def rgb_to_image(image: np.ndarray, header: Header, encoding: str = "rgb8") -> Image:
    """A ``sensor_msgs/Image`` of ``image`` ``(height, width, 3)`` uint8 RGB, stamped with ``header``.

    ``encoding`` is ``rgb8`` or ``bgr8``; rows are packed (``step = width * 3``).
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (height, width, 3) uint8 RGB, got {image.shape} {image.dtype}")
    if encoding not in _ENCODERS:
        raise ValueError(f"encoding '{encoding}' is not supported (supported: {', '.join(_ENCODERS)})")
    conversion = _ENCODERS[encoding]
    pixels = np.ascontiguousarray(image if conversion is None else cv2.cvtColor(image, conversion))
    data = array.array("B")
    data.frombytes(pixels.data)
    height, width = pixels.shape[:2]
    msg = Image(header=header, height=height, width=width, encoding=encoding, is_bigendian=0, step=width * 3)
    msg.data = data
    return msg


def benchmark(sizes: tuple[tuple[int, int], ...] = ((640, 480), (1920, 1080)), repeats: int = 50) -> dict[str, float]:
    """Median milliseconds per frame of ``image_to_rgb`` for each encoding at each ``(width, height)``.

    Keys are ``"<encoding>@<width>x<height>"`` plus ``"rgb_to_image@..."`` for the reverse.
    Messages are built once; only the conversion is timed (rclpy's own deserialisation is not).
    """
    rng = np.random.default_rng(0)
    figures: dict[str, float] = {}

    def median_ms(function) -> float:
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            function()
            times.append(time.perf_counter() - started)
        return float(np.median(times) * 1e3)

    for width, height in sizes:
        rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        for encoding, (channels, _) in _DECODERS.items():
            pixels = rng.integers(0, 256, (height, width * channels), dtype=np.uint8)
            msg = Image(height=height, width=width, encoding=encoding, step=width * channels)
            msg.data = array.array("B", pixels.tobytes())
            figures[f"{encoding}@{width}x{height}"] = median_ms(lambda m=msg: image_to_rgb(m))
        figures[f"rgb_to_image@{width}x{height}"] = median_ms(lambda: rgb_to_image(rgb, Header()))
    return figures
