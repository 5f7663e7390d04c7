"""The two V4L2 ioctls vidpipe needs to describe a camera, in plain Python.

VIDIOC_QUERYCAP (driver, card, bus, capabilities) and VIDIOC_ENUM_FMT
(pixel formats), read with ``fcntl.ioctl`` so no extra library is needed.
"""

import errno
import fcntl
import os
import struct
from dataclasses import dataclass, field
from typing import List

# struct v4l2_capability: driver[16] card[32] bus_info[32] version capabilities
# device_caps reserved[3]
_CAP = struct.Struct("<16s32s32sIII3I")
VIDIOC_QUERYCAP = (2 << 30) | (_CAP.size << 16) | (ord("V") << 8) | 0
# struct v4l2_fmtdesc: index type flags description[32] pixelformat mbus_code reserved[3]
_FMT = struct.Struct("<III32sII3I")
VIDIOC_ENUM_FMT = (3 << 30) | (_FMT.size << 16) | (ord("V") << 8) | 2
V4L2_BUF_TYPE_VIDEO_CAPTURE = 1
V4L2_CAP_VIDEO_CAPTURE = 0x00000001
V4L2_CAP_DEVICE_CAPS = 0x80000000


@dataclass
class DeviceInfo:
    driver: str = ""
    card: str = ""
    bus_info: str = ""
    capture: bool = False
    formats: List[str] = field(default_factory=list)


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def fourcc(code: int) -> str:
    return "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4))


def query(node: str) -> DeviceInfo:
    """Describe ``node``; raises OSError when it cannot be opened or is not V4L2."""
    fd = os.open(node, os.O_RDWR | os.O_NONBLOCK)
    try:
        buf = bytearray(_CAP.size)
        fcntl.ioctl(fd, VIDIOC_QUERYCAP, buf)
        driver, card, bus, _version, caps, device_caps = _CAP.unpack(bytes(buf))[:6]
        if caps & V4L2_CAP_DEVICE_CAPS:
            caps = device_caps
        info = DeviceInfo(driver=_text(driver), card=_text(card), bus_info=_text(bus),
                          capture=bool(caps & V4L2_CAP_VIDEO_CAPTURE))
        if info.capture:
            info.formats = _formats(fd)
        return info
    finally:
        os.close(fd)


def _formats(fd: int) -> List[str]:
    out: List[str] = []
    for index in range(64):
        buf = bytearray(_FMT.pack(index, V4L2_BUF_TYPE_VIDEO_CAPTURE, 0, b"", 0, 0, 0, 0, 0))
        try:
            fcntl.ioctl(fd, VIDIOC_ENUM_FMT, buf)
        except OSError as exc:
            if exc.errno == errno.EINVAL:  # end of the list
                break
            raise
        out.append(fourcc(_FMT.unpack(bytes(buf))[4]))
    return out
