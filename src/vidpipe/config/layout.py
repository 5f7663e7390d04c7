"""The runtime directory (``[pipeline] runtime_dir``, ``/run/vidpipe``):
every name vidpipe gives a socket or file in it, in one place.

=======================  ==================================================
``decoder-CAM.sock``     a decoder's frames (ipc); handlers find decoders by
                         this name (:data:`DECODER_SOCKETS`)
``collector.sock``       the collector's results
``tap-CAM.sock``         a decoder's tap; ``tap-collector.sock`` the
                         collector's
``clips.sock``           the collector's clip requests to the decoders
                         that record (vidpipe.outputs.clips)
``CAM-STREAM.ring``      a decoder run's shared-memory ring of frames
``results/``             the handlers' result rings
``status/``              the status board, a JSON file per role
=======================  ==================================================
"""

import os

#: what a handler looks for to find the decoders on this host
DECODER_SOCKETS = "decoder-*.sock"


def root(runtime_dir: str) -> str:
    """``runtime_dir`` without a trailing slash (``/`` stays ``/``)."""
    return runtime_dir.rstrip("/") or "/"


def decoder_endpoint(runtime_dir: str, camera: str) -> str:
    return "ipc://{}/decoder-{}.sock".format(root(runtime_dir), camera)


def collector_endpoint(runtime_dir: str) -> str:
    return "ipc://{}/collector.sock".format(root(runtime_dir))


def tap_endpoint(runtime_dir: str, camera_or_collector: str) -> str:
    return "ipc://{}/tap-{}.sock".format(root(runtime_dir), camera_or_collector)


def clips_endpoint(runtime_dir: str) -> str:
    return "ipc://{}/clips.sock".format(root(runtime_dir))


def ring_name(camera: str, stream: int) -> str:
    """A decoder run's ring of frames (a new stream, a new ring)."""
    return "{}-{:x}.ring".format(camera, stream)


def results_dir(runtime_dir: str) -> str:
    """Where handlers keep their result rings."""
    return os.path.join(runtime_dir, "results")


def board_dir(runtime_dir: str) -> str:
    """The status board: what every role on this host says of itself."""
    return os.path.join(runtime_dir, "status")
