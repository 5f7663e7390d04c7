"""A real RTSP camera for the tests: GStreamer's RTSP server (Debian's
gir1.2-gst-rtsp-server-1.0, x264/x265 encoders) serving a live moving test
pattern as H.264 on /h264, H.265 on /h265 and Motion JPEG on /jpeg, over TCP
and UDP; /h264-shared is H.264 from one media shared by all clients;
/h264-sub is the sub-stream, H.264 at 640x360 whatever the main size;
/h264-resize is H.264 whose picture changes size every 3 s (full, half),
one media shared by all clients.

    python3 tests/rtsp_camera.py PORT [WIDTH HEIGHT FPS [USER:PASSWORD | FILE]]

Prints "ready" once it serves, then "client" for each connection; runs
until terminated. With USER:PASSWORD, or a FILE in vidpipe's credentials
format (user on the first line, password on the second: the password then
stays out of the command line), clients must log in (basic auth): a wrong
password gets 401 Unauthorized.
Run by /usr/bin/python3 (the GObject bindings are Debian's)."""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

ENCODERS = {
    "h264": "x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} "
            "! video/x-h264,profile=baseline ! rtph264pay name=pay0 pt=96 config-interval=1",
    "h265": "x265enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} "
            "! rtph265pay name=pay0 pt=96 config-interval=1",
    # what many cheap cameras send: no codec the GStreamer path takes, FFmpeg decodes it
    "jpeg": "video/x-raw,format=I420 ! jpegenc quality=80 ! rtpjpegpay name=pay0 pt=26",
}


RESIZE_S = 3


def _resize_every(capsfilter: "Gst.Element", sizes: list) -> None:
    turn = [0]

    def resize() -> bool:
        turn[0] += 1
        width, height = sizes[turn[0] % len(sizes)]
        capsfilter.set_property("caps", Gst.Caps.from_string(
            "video/x-raw,width={},height={}".format(width, height)))
        return True  # again

    GLib.timeout_add_seconds(RESIZE_S, resize)


def main() -> None:
    Gst.init(None)
    port = sys.argv[1]
    width, height, fps = (int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])) \
        if len(sys.argv) > 4 else (640, 480, 30)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    mounts = server.get_mount_points()
    for name, encoder in list(ENCODERS.items()) + [("h264-shared", ENCODERS["h264"])]:
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(
            "( videotestsrc is-live=true pattern=ball ! video/x-raw,width={w},height={h},"
            "framerate={fps}/1 ! videoconvert ! {enc} )".format(
                w=width, h=height, fps=fps, enc=encoder.format(fps=fps)))
        # a media of its own per client, as a camera's server gives; and one
        # shared by every client, as GStreamer's test-launch serves (its media,
        # unprepared after a DESCRIBE-only client such as vidpipe's probe left,
        # answers the next DESCRIBE with 503 for a while)
        factory.set_shared(name.endswith("-shared"))
        if len(sys.argv) > 5:
            permissions = GstRtspServer.RTSPPermissions()
            permissions.add_permission_for_role("viewer", "media.factory.access", True)
            permissions.add_permission_for_role("viewer", "media.factory.construct", True)
            factory.set_permissions(permissions)
        mounts.add_factory("/" + name, factory)
    # the camera's sub-stream: H.264 at 640x360 whatever the main size
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        "( videotestsrc is-live=true pattern=ball ! video/x-raw,width=640,height=360,"
        "framerate={fps}/1 ! videoconvert ! {enc} )".format(
            fps=fps, enc=ENCODERS["h264"].format(fps=fps)))
    mounts.add_factory("/h264-sub", factory)
    # a camera whose picture changes size every RESIZE_S seconds (the
    # operator changed its resolution; a new SPS in the stream): H.264
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        "( videotestsrc is-live=true pattern=ball ! video/x-raw,width={w},height={h},"
        "framerate={fps}/1 ! videoscale ! capsfilter name=size caps=video/x-raw,width={w},"
        "height={h} ! videoconvert ! {enc} )".format(w=width, h=height, fps=fps,
                                                      enc=ENCODERS["h264"].format(fps=fps)))
    factory.set_shared(True)  # a client that reconnects sees the size of the moment
    factory.connect("media-configure", lambda _f, media: _resize_every(
        media.get_element().get_by_name("size"), [(width, height), (width // 2, height // 2)]))
    mounts.add_factory("/h264-resize", factory)
    if len(sys.argv) > 5:
        if sys.argv[5].startswith("/"):
            with open(sys.argv[5], encoding="utf-8") as handle:
                user, password = handle.read().splitlines()[:2]
        else:
            user, _, password = sys.argv[5].partition(":")
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "viewer")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
        server.set_auth(auth)
    # one line per connection, so tests can count how often a client comes
    server.connect("client-connected", lambda _server, client: print(
        "client", flush=True))
    if server.attach(None) == 0:
        raise SystemExit("cannot listen on 127.0.0.1:{}".format(port))
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
