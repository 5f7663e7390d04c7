"""Which decoder a network camera gets on each kind of box, and the pipeline
OpenCV is handed: the registry of each box is given as the set of element
names its GStreamer plugins provide (what ``gst-inspect-1.0`` lists there)."""

import pytest

from vidpipe.capture import gstplayer, gstreamer
from vidpipe.config import CameraConfig, rules_of

# element names as each box's packages provide them
JETSON = {"nvv4l2decoder", "nvvidconv", "avdec_h264", "avdec_h265", "rtspsrc"}
PI4 = {"v4l2h264dec", "v4l2h265dec", "avdec_h264", "avdec_h265"}
PI5 = {"v4l2slh265dec", "avdec_h264", "avdec_h265"}  # no H.264 decoder in hardware
INTEL = {"vah264dec", "vah265dec", "vapostproc", "vaapih264dec", "avdec_h264", "avdec_h265"}
OLD_INTEL = {"vaapih264dec", "vaapih265dec", "avdec_h264"}
PLAIN = {"avdec_h264", "avdec_h265"}
BARE = set()  # GStreamer without gstreamer1.0-libav


@pytest.mark.parametrize("box,codec,element,family", [
    (JETSON, "h264", "nvv4l2decoder", "nvdec"), (JETSON, "h265", "nvv4l2decoder", "nvdec"),
    (PI4, "h264", "v4l2h264dec", "v4l2m2m"), (PI4, "h265", "v4l2h265dec", "v4l2m2m"),
    (PI5, "h264", "avdec_h264", "software"), (PI5, "h265", "v4l2slh265dec", "v4l2m2m"),
    (INTEL, "h264", "vah264dec", "vaapi"), (OLD_INTEL, "h265", "vaapih265dec", "vaapi"),
    (PLAIN, "h265", "avdec_h265", "software"),
])
def test_auto_picks_the_boxs_hardware_decoder_else_software(box: set, codec: str,
                                                             element: str, family: str) -> None:
    choice = gstreamer.choose(codec, "auto", box.__contains__)
    assert (choice.element, choice.family) == (element, family)


def test_an_explicit_choice_is_kept_or_named_when_missing() -> None:
    assert gstreamer.choose("h264", "software", JETSON.__contains__).element == "avdec_h264"
    with pytest.raises(gstreamer.NoDecoder, match=r"no GStreamer element decodes H\.264 with "
                       r"decode = 'nvdec' here \(tried nvv4l2decoder\)"):
        gstreamer.choose("h264", "nvdec", INTEL.__contains__)
    with pytest.raises(gstreamer.NoDecoder, match="gstreamer1.0-libav.*decode = \"ffmpeg\""):
        gstreamer.choose("h265", "auto", BARE.__contains__)


def test_the_config_offers_exactly_the_decode_choices() -> None:
    assert rules_of(CameraConfig)["decode"].choices == gstreamer.DECODE_CHOICES


def test_the_status_text_names_codec_and_element() -> None:
    assert gstreamer.Choice("nvdec", "nvv4l2decoder", "h264").text() == \
        "decoding H.264 on nvv4l2decoder (nvdec)"
    assert gstreamer.Choice("software", "avdec_h265", "h265").text() == \
        "decoding H.265 on avdec_h265 (software)"


def test_the_pipeline_scales_and_rates_before_frames_are_handed_out() -> None:
    soft = gstreamer.Choice("software", "avdec_h264", "h264")
    text = gstreamer.describe_pipeline("rtsp://cam/stream", soft, 640, 360, 5, "udp", 100,
                                       exists=(PLAIN | {"watchdog"}).__contains__)
    assert text.startswith('rtspsrc location="rtsp://cam/stream" protocols=udp latency=100 ')
    assert " ! rtph264depay ! watchdog timeout=2000 ! h264parse ! avdec_h264 ! " \
        "videorate drop-only=true ! videoscale ! video/x-raw,width=640,height=360," \
        "framerate=5/1 ! videoconvert ! video/x-raw,format=BGR ! appsink " in text
    # the stream's own size and rate: no caps on them; GRAY8 straight from the decoder
    own = gstreamer.describe_pipeline("rtsp://cam/s", soft, pixels="GRAY8",
                                      exists=PLAIN.__contains__)
    assert "avdec_h264 ! videoconvert ! video/x-raw,format=GRAY8 ! appsink" in own
    assert "videorate" not in own and "videoscale" not in own
    assert "watchdog" not in own  # not on this box: rtspsrc's own TCP timeout only


def test_a_jetson_scales_on_nvvidconv_out_of_nvmm() -> None:
    nv = gstreamer.Choice("nvdec", "nvv4l2decoder", "h265")
    text = gstreamer.describe_pipeline("rtsp://cam/s", nv, 1280, 720, 0, "tcp",
                                       exists=JETSON.__contains__)
    assert "h265parse ! nvv4l2decoder ! nvvidconv ! video/x-raw,width=1280,height=720 ! " \
        "videoscale" in text
    # at the stream's own size too: videoconvert cannot read NVMM memory
    own = gstreamer.describe_pipeline("rtsp://cam/s", nv, exists=JETSON.__contains__)
    assert "h265parse ! nvv4l2decoder ! nvvidconv ! video/x-raw ! videoconvert ! " in own


def test_a_url_cannot_break_out_of_its_property() -> None:
    soft = gstreamer.Choice("software", "avdec_h264", "h264")
    text = gstreamer.describe_pipeline('rtsp://x/a" ! filesink location="/etc/passwd', soft)
    assert 'location="rtsp://x/a\\" ! filesink location=\\"/etc/passwd"' in text


BASE = set(gstreamer.NEEDED)  # base, good and bad plugins: what every pipeline needs


@pytest.mark.parametrize("box,codec,why", [
    (BASE | JETSON, "h264", ""),
    (BASE | PI5, "h265", ""),
    (BASE | PI5, "h264", ""),  # software on a Pi 5: still GStreamer (it scales)
    (BASE, "h264", "no GStreamer element decodes H.264 with decode = 'auto'"),
    (BASE - {"rtspsrc"} | PLAIN, "h264", "no GStreamer element rtspsrc (Debian: apt install "
                                         "gstreamer1.0-plugins-good)"),
    (BASE - {"h265parse"} | PLAIN, "h265", "no GStreamer element h265parse (Debian: apt "
                                           "install gstreamer1.0-plugins-bad)"),
    (BASE - {"h265parse"} | PLAIN, "h264", ""),  # not needed for H.264
    (BASE | PLAIN, "jpeg", "JPEG is not a codec the GStreamer path decodes (H.264, H.265)"),
    (BASE | PLAIN, "", "the camera named no codec"),
])
def test_auto_falls_back_to_ffmpeg_naming_why(box: set, codec: str, why: str) -> None:
    """decode = "auto": GStreamer when the box can, else the reason FFmpeg
    decodes instead (the log and status show it)."""
    reason = gstreamer.unusable(codec, box.__contains__, bindings=lambda: "")
    assert reason.startswith(why) if why else reason == ""


def test_auto_falls_back_when_the_python_bindings_are_missing() -> None:
    missing = "GStreamer's Python bindings are missing (Debian: apt install python3-gi ...)"
    assert gstreamer.unusable("h264", (BASE | PLAIN).__contains__,
                              bindings=lambda: missing) == missing


def test_an_i420_buffer_is_packed_as_opencv_lays_it_out() -> None:
    """GStreamer pads a plane's rows to its stride (a width whose half is not
    a multiple of 4): copied plane by plane into Y, U, V; a buffer already laid
    out so is used in place (no copy)."""
    import types

    import numpy as np

    y = np.arange(24, dtype=np.uint8).reshape(4, 6)
    u, v = y[:2, :3] + 100, y[:2, :3] + 200
    padded = np.zeros(48, np.uint8)  # Y rows of 8 bytes, U and V rows of 4
    padded[:32].reshape(4, 8)[:, :6] = y
    padded[32:40].reshape(2, 4)[:, :3] = u
    padded[40:48].reshape(2, 4)[:, :3] = v
    info = types.SimpleNamespace(height=4, width=6, offset=[0, 32, 40], stride=[8, 4, 4])
    packed = gstplayer._packed_i420(info, padded)
    assert packed.shape == (6, 6)
    assert list(packed.reshape(-1)) == list(y.reshape(-1)) + list(u.reshape(-1)) + \
        list(v.reshape(-1))
    flat = np.concatenate([y.reshape(-1), u.reshape(-1), v.reshape(-1), np.zeros(4, np.uint8)])
    tight = types.SimpleNamespace(height=4, width=6, offset=[0, 24, 30], stride=[6, 3, 3])
    same = gstplayer._packed_i420(tight, flat)
    assert np.shares_memory(same, flat) and np.array_equal(same, packed)
    # the copy of a padded buffer goes where the caller wants it (one copy)
    target = np.zeros((6, 6), np.uint8)
    assert gstplayer._packed_i420(info, padded, into=target) is target
    assert np.array_equal(target, packed)
    assert gstplayer._packed_i420(tight, flat, into=target) is not target  # no copy needed


def test_an_i420_buffer_shorter_than_its_caps_is_refused_not_read_past() -> None:
    import types

    import numpy as np

    info = types.SimpleNamespace(height=4, width=6, offset=[0, 32, 40], stride=[8, 4, 4])
    with pytest.raises(gstreamer.PlayerError) as err:
        gstplayer._packed_i420(info, np.zeros(44, np.uint8))  # V's last row is missing
    assert "plane 2 does not fit its buffer (44 bytes)" in str(err.value)
