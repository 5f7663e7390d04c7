import numpy as np
import pytest

from vidpipe.link import wire


def frame(h: int = 4, w: int = 5, c: int = 3, dtype: str = "uint8") -> np.ndarray:
    return (np.arange(h * w * c) % 251).astype(dtype).reshape((h, w, c) if c > 1 else (h, w))


@pytest.mark.parametrize("c,dtype", [(3, "uint8"), (1, "uint8"), (4, "uint16"), (1, "float32")])
def test_frame_round_trip_is_exact_and_zero_copy(c: int, dtype: str) -> None:
    image = frame(c=c, dtype=dtype)
    parts = wire.frame_parts(image, "cam0", 42, 7, 123456789)
    assert parts[1] is image  # contiguous arrays are sent as they are
    received = bytearray(image.tobytes())  # stands in for the zmq.Frame's buffer
    msg = wire.decode([parts[0], received])
    assert (msg.header.camera, msg.header.stream, msg.header.seq, msg.header.capture_ns) == \
        ("cam0", 42, 7, 123456789)
    out = msg.image()
    assert out.dtype == image.dtype and np.array_equal(out, image)
    received[0] ^= 0xFF  # a view on the received buffer, not a copy of it
    assert out.view(np.uint8).reshape(-1)[0] == received[0]


def test_non_contiguous_arrays_are_made_contiguous() -> None:
    image = frame(8, 8)[:, ::2]
    parts = wire.frame_parts(image, "cam0", 1, 0, 0)
    assert parts[1].flags["C_CONTIGUOUS"]
    assert np.array_equal(wire.decode([parts[0], bytes(parts[1])]).image(), image)


def test_result_carries_json_meta_and_optional_image() -> None:
    parts = wire.result_parts(None, {"faces": [[1, 2, 3, 4]], "n": np.int64(3)}, "c", 1, 2, 3)
    msg = wire.decode([bytes(p) for p in parts])
    assert msg.meta == {"faces": [[1, 2, 3, 4]], "n": 3} and not msg.header.flags
    parts = wire.result_parts(frame(c=1), {}, "c", 1, 2, 3)
    msg = wire.decode([bytes(p) if not isinstance(p, np.ndarray) else p.tobytes()
                       for p in parts])
    assert msg.header.flags & wire.FLAG_IMAGE and msg.image().shape == (4, 5)


def head(**kw: object) -> bytes:
    fields = dict(kind=wire.FRAME, camera="c", stream=1, seq=0, width=5, height=4, channels=3,
                  dtype=1, payload_len=60)
    fields.update(kw)
    return wire.Header(**fields).pack()  # type: ignore[arg-type]


@pytest.mark.parametrize("parts,reason", [
    ([], "empty"),
    ([b"x" * 83], "bad_header"),
    ([b"x" * 85], "bad_header"),
    ([b"NOPE" + head()[4:], b"\0" * 60], "bad_magic"),
    ([head(version=2), b"\0" * 60], "bad_version"),
    ([head(kind=99), b"\0" * 60], "bad_kind"),
    ([head()], "bad_parts"),
    ([head(), b"\0" * 60, b"extra"], "bad_parts"),
    ([head(), b"\0" * 59], "bad_length"),
    ([head(payload_len=59), b"\0" * 59], "bad_length"),
    ([head(width=0, payload_len=0), b""], "bad_shape"),
    ([head(width=20000, payload_len=20000 * 12), b"\0" * 240000], "bad_shape"),
    ([head(channels=5, payload_len=100), b"\0" * 100], "bad_shape"),
    ([head(dtype=0), b"\0" * 60], "bad_dtype"),
    ([head(dtype=200), b"\0" * 60], "bad_dtype"),
    ([head(encoding=9), b"\0" * 60], "bad_encoding"),
    ([head(camera="c"), b"\0" * 60], None),
    ([wire.Header(kind=wire.RESULT).pack(), b"\xff\xfe", b""], "bad_meta"),
    ([wire.Header(kind=wire.RESULT).pack(), b'"text"', b""], "bad_meta"),
    ([wire.Header(kind=wire.RESULT).pack(), b"{}", b"payload without flag"], "bad_length"),
    ([wire.Header(kind=wire.CREDIT).pack(), b"{" + b" " * wire.MAX_META_BYTES + b"}"],
     "oversized"),
])
def test_malformed_messages_raise_with_a_reason(parts: list, reason: str) -> None:
    if reason is None:
        wire.decode(parts)
        return
    with pytest.raises(wire.WireError) as err:
        wire.decode(parts)
    assert err.value.reason == reason


def test_payload_over_the_limit_is_refused() -> None:
    with pytest.raises(wire.WireError) as err:
        wire.decode([head(), b"\0" * 60], max_bytes=59)
    assert err.value.reason == "oversized"


def test_camera_name_must_be_utf8() -> None:
    raw = bytearray(head())
    raw[-32:-30] = b"\xff\xfe"
    with pytest.raises(wire.WireError) as err:
        wire.decode([bytes(raw), b"\0" * 60])
    assert err.value.reason == "bad_camera"


def received(parts: list) -> wire.Message:
    """``parts`` as a receiver decodes them (arrays arrive as bytes)."""
    return wire.decode([p.tobytes() if isinstance(p, np.ndarray) else p for p in parts])


def test_an_i420_image_is_flagged_and_its_shape_checked() -> None:
    """FLAG_I420: one uint8 channel, even width, height*3/2 rows; the flag
    rides on FRAME and RESULT; any other shape under it is refused."""
    planar = np.arange(72 * 64, dtype=np.uint8).reshape(72, 64)
    msg = received(wire.frame_parts(planar, "cam0", 1, 0, 0, flags=wire.FLAG_I420))
    assert msg.header.flags & wire.FLAG_I420 and np.array_equal(msg.image(), planar)
    res = received(wire.result_parts(planar, {}, "cam0", 1, 0, 0, flags=wire.FLAG_I420))
    assert res.header.flags == wire.FLAG_IMAGE | wire.FLAG_I420
    for bad in (np.zeros((71, 64), np.uint8), np.zeros((72, 63), np.uint8),
                np.zeros((72, 64, 3), np.uint8), np.zeros((72, 64), np.uint16)):
        with pytest.raises(wire.WireError) as err:
            received(wire.frame_parts(bad, "cam0", 1, 0, 0, flags=wire.FLAG_I420))
        assert err.value.reason == "bad_shape" and "I420" in str(err.value)
