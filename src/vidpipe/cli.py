"""The ``vidpipe`` command.

Exit status: 0 done, 1 unexpected error, 2 usage, 69 (EX_UNAVAILABLE) a
socket could not be bound, 78 (EX_CONFIG) configuration error. Errors are
one line; ``DEBUG=1`` adds the traceback.
"""

import argparse
import faulthandler
import json
import logging
import os
import signal
import sys
import traceback
from typing import Any, List, Optional

from vidpipe import __version__
from vidpipe.config import EX_CONFIG, ConfigError, default_path, load_config

EX_UNAVAILABLE = 69
log = logging.getLogger("vidpipe")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vidpipe", description="Realtime video processing: decoder -> handlers -> "
        "collector over ZeroMQ.")
    parser.add_argument("--version", action="version", version="vidpipe " + __version__)
    parser.add_argument("--config", metavar="FILE", help="configuration file (default: "
                        "$VIDPIPE_CONFIG or /etc/vidpipe/pipeline.toml)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    run = sub.add_parser("run", help="run one role (what the systemd units start)")
    run.add_argument("role", choices=("decoder", "handler", "collector"))
    run.add_argument("name", nargs="?", default="",
                     help="camera name (decoder), handler number (handler), or collector name")

    check = sub.add_parser("check-config", help="validate a configuration file and exit")
    check.add_argument("file", nargs="?", help="file to check (default: the --config file)")

    cams = sub.add_parser("cameras", help="list the V4L2 capture devices found")
    cams.add_argument("--json", action="store_true", help="machine-readable output")

    devs = sub.add_parser("devices", help="list what handlers can run on (CPU cores, "
                          "CUDA GPUs, Jetson DLA cores) and the software: which OpenCV "
                          "(GStreamer/FFmpeg/CUDA), NumPy, ZeroMQ, TOML parser")
    devs.add_argument("--json", action="store_true", help="machine-readable output")
    devs.add_argument("--root", help="system root to look in (default: $VIDPIPE_SYSROOT or /)")

    status = sub.add_parser("status", help="every vidpipe role on this host: state, fps, "
                            "latency, drops, restarts, cores; and the accelerators")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--prometheus", action="store_true",
                        help="print the metrics page (Prometheus text format)")
    status.add_argument("--no-units", action="store_true",
                        help="do not ask systemd about the units")

    tap = sub.add_parser("tap", help="subscribe to a camera's frames: per-frame stats, "
                         "a summary, an HDF5 copy, and the frames this tap missed")
    tap.add_argument("camera", help="camera name, e.g. cam0")
    tap.add_argument("--from", dest="source", choices=("decoder", "collector"),
                     default="decoder", help="camera frames (decoder, the default) or "
                     "processed results (collector)")
    tap.add_argument("--endpoint", default="", help="connect here instead of the "
                     "configured tap address (e.g. tcp://host:5601)")
    tap.add_argument("--stats", action="store_true",
                     help="print min/max/mean and the gap count per frame")
    tap.add_argument("--summary", metavar="OUT.npy", default="",
                     help="on exit, save seq, capture_ns, min, max, mean per frame")
    tap.add_argument("--save", metavar="OUT.h5", default="",
                     help="record what arrives to HDF5 (needs python3-h5py)")
    tap.add_argument("--frames", type=int, default=0, help="stop after N frames")
    tap.add_argument("--duration", type=float, default=0, help="stop after N seconds")
    tap.add_argument("--slow-ms", type=float, default=0,
                     help="spend N ms per frame (to see what a slow consumer misses)")
    tap.add_argument("--json", action="store_true", help="print the final report as JSON")

    keygen = sub.add_parser("keygen", help="make a CurveZMQ key pair for [security] "
                            "curve = true")
    keygen.add_argument("name", help="key name, e.g. server, client, or a host's name")
    keygen.add_argument("--dir", default=None, help="where (default: [security] keys_dir, "
                        "/etc/vidpipe/keys)")
    keygen.add_argument("--allow", action="store_true", help="also admit its public key "
                        "(copy it into the allowed directory)")

    udev = sub.add_parser("udev-name", help="print the camera name for the device udev is "
                          "adding (used by 60-vidpipe.rules)")
    udev.add_argument("--registry", default=None, help="name registry (default: "
                      "/var/lib/vidpipe-udev/cameras.json)")

    sub.add_parser("bench", help="measure the pipeline on pre-rendered frames "
                   "(vidpipe bench --help)", add_help=False)

    demo = sub.add_parser("demo", help="run the whole pipeline in one command")
    demo.add_argument("--source", help="testsrc, /dev/videoN, a video file or a URL "
                      "(default: the first camera found, else testsrc)")
    demo.add_argument("--credentials", metavar="FILE",
                      help="the camera's user (first line) and password (second), kept out "
                           "of the URL and so out of this command line")
    demo.add_argument("--handlers", type=int, default=2, help="handler processes (2)")
    demo.add_argument("--stages", default="gray", help="comma-separated stages (gray)")
    demo.add_argument("--dispatch", default="balanced",
                      choices=("balanced", "round-robin", "by-camera"))
    demo.add_argument("--width", type=int, default=640)
    demo.add_argument("--height", type=int, default=480)
    demo.add_argument("--fps", type=float, default=30.0, help="test/file pacing (0: unpaced)")
    demo.add_argument("--frames", type=int, default=0, help="stop after N frames (0: never)")
    demo.add_argument("--duration", type=float, default=0, help="stop after N seconds")
    demo.add_argument("--max-latency-ms", type=int, default=250)
    demo.add_argument("--stats-interval", type=float, default=2.0)
    demo.add_argument("--display", action="store_true", help="show frames in a window")
    demo.add_argument("--jsonl", metavar="FILE", help="also write every result to FILE")
    demo.add_argument("--http", metavar="HOST:PORT", default="127.0.0.1:8090",
                      help="live preview and metrics here (127.0.0.1:8090; '' for none)")
    return parser


def _run_role(args: argparse.Namespace) -> int:
    from vidpipe.service import Notifier, Stopper, setup_logging

    config = load_config(args.config)
    setup_logging(config.pipeline.log_level)
    for warning in config.warnings:
        logging.getLogger("vidpipe.config").warning("%s", warning)
    # a crash in a C library leaves its Python stack in the journal, and
    # `systemctl kill -s USR1 UNIT` writes every thread's stack there on demand
    faulthandler.enable()
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    notifier = Notifier()
    if args.role == "decoder" and not args.name:
        raise ConfigError(config.path, "cameras", "name the camera: vidpipe run decoder NAME")
    role_class = _role_class(args.role)
    # only now: until here a stop has nothing to finish, and the kernel's SIGTERM
    # ends the process even while importing OpenCV holds the interpreter
    stopper = Stopper().install()
    default_name = {"decoder": "", "handler": "1"}.get(args.role, "main")
    return role_class(config, args.name or default_name, notifier, stopper).run()


def _role_class(role: str) -> Any:
    if role == "decoder":
        from vidpipe.decoder import Decoder

        return Decoder
    if role == "handler":
        from vidpipe.handler import Handler

        return Handler
    from vidpipe.collector import Collector

    return Collector


def _check_config(args: argparse.Namespace) -> int:
    from vidpipe.host.accel import for_handler
    from vidpipe.stages import build_chain

    config = load_config(args.file or args.config)
    for name in ["defaults"] + sorted(config.handler_overrides):
        handler = "1" if name == "defaults" else name
        hc = config.handler(handler)
        section = "handlers" if name == "defaults" else "handlers." + name
        build_chain(config, hc.stages, section, for_handler(config, handler))
    from vidpipe.capture.sources import make_source

    for cam in config.cameras.values():
        make_source(cam, config.path)
    from vidpipe.outputs.assemble import check_requirements

    check_requirements(config.collector, config.path)
    for warning in config.warnings:
        print("warning: " + warning, file=sys.stderr)
    print("{}: OK ({} camera(s): {}; dispatch {}{})".format(
        config.path, len(config.cameras), ", ".join(sorted(config.cameras)) or "none",
        config.pipeline.dispatch, "; {} warning(s) above".format(len(config.warnings))
        if config.warnings else ""))
    return 0


def _cameras(args: argparse.Namespace) -> int:
    from vidpipe.capture.cameras import list_capture_devices

    found = list_capture_devices()
    if args.json:
        print(json.dumps([cam.as_dict() for cam in found], indent=2))
        return 0
    if not found:
        print("no V4L2 capture devices found")
        return 0
    for cam in found:
        print("{:<8} {}  {}  [{}]  {}".format(cam.name or "-", cam.node, cam.card or "?",
                                              cam.driver or "?", " ".join(cam.formats) or "-"))
        for label, value in (("by-id", cam.by_id), ("by-path", cam.by_path),
                             ("serial", cam.serial)):
            if value:
                print("    {}: {}".format(label, value))
    return 0


def _devices(args: argparse.Namespace) -> int:
    from vidpipe.host.accel import detect

    from vidpipe.host import software

    found = detect(args.root)
    info = software.describe()
    if args.json:
        print(json.dumps(dict(found.as_dict(), software=info), indent=2))
    else:
        print("\n".join(found.describe() + software.lines(info)))
    return 0


def _status(args: argparse.Namespace) -> int:
    from vidpipe.status import metrics
    from vidpipe.tools import status

    config = load_config(args.config)
    try:
        report = status.gather(config.pipeline.runtime_dir, with_units=not args.no_units)
    except PermissionError as exc:
        print("vidpipe: {}".format(exc), file=sys.stderr)
        return 1
    if args.prometheus:
        sys.stdout.write(metrics.render(report["roles"]))
    elif args.json:
        print(status.as_json(report))
    else:
        sys.stdout.write(status.table(report))
    return 0


def _tap(args: argparse.Namespace) -> int:
    from vidpipe.service import Stopper, setup_logging
    from vidpipe.tools.tapclient import Tap, print_report

    config = load_config(args.config)
    setup_logging("warning")
    if args.save:
        from vidpipe.outputs.h5store import require_h5py

        try:
            require_h5py()
        except RuntimeError as exc:
            raise ConfigError("", "tap --save", str(exc)) from None
    tap = Tap(config, args.camera, args.source, args.endpoint,
              sys.stdout if args.stats else None, args.summary, args.save, args.slow_ms)
    report = tap.run(Stopper().install(), args.frames, args.duration)
    print_report(report, args.json, sys.stdout if args.json else sys.stderr)
    return 0


def _keygen(args: argparse.Namespace) -> int:
    import re

    from vidpipe.link.curve import keygen

    if not re.match(r"^[A-Za-z0-9_.-]{1,64}$", args.name):
        raise ConfigError("", "keygen", "key names are letters, digits, _ . - (got {!r})"
                          .format(args.name))
    directory = args.dir
    if directory is None:
        try:
            directory = load_config(args.config).security.keys_dir
        except ConfigError:
            directory = "/etc/vidpipe/keys"
    public, secret = keygen(directory, args.name, args.allow)
    print("{}\n{}".format(public, secret))
    if args.allow:
        print("admitted: {}".format(os.path.join(directory, "allowed", args.name + ".key")))
    return 0


def _udev_name(args: argparse.Namespace) -> int:
    from vidpipe.capture import naming

    try:
        config = load_config(args.config)
    except ConfigError as exc:  # a broken config must not stop cameras being named
        print("vidpipe: {} (naming without it)".format(exc), file=sys.stderr)
        config = None
    from vidpipe import names

    try:
        name = naming.assign(os.environ, config, args.registry or naming.REGISTRY)
    except (naming.NamingError, OSError) as exc:
        print("vidpipe: cannot name {}: {}".format(os.environ.get("DEVNAME", "the device"),
                                                  exc), file=sys.stderr)
        return 1
    if not names.valid(name):  # udev puts it in SYMLINK+= and a unit name
        print("vidpipe: refusing camera name {!r}".format(name), file=sys.stderr)
        return 1
    print(name)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        from vidpipe.tools.bench import main as bench

        return bench(argv[1:])
    args = _parser().parse_args(argv)
    if args.config is None and os.environ.get("VIDPIPE_CONFIG"):
        args.config = default_path()
    try:
        if args.command == "run":
            return _run_role(args)
        if args.command == "check-config":
            return _check_config(args)
        if args.command == "cameras":
            return _cameras(args)
        if args.command == "devices":
            return _devices(args)
        if args.command == "status":
            return _status(args)
        if args.command == "tap":
            return _tap(args)
        if args.command == "keygen":
            return _keygen(args)
        if args.command == "udev-name":
            return _udev_name(args)
        if args.command == "demo":
            from vidpipe.tools.demo import run_demo
            from vidpipe.service import setup_logging

            setup_logging("info")
            return run_demo(args)
    except ConfigError as exc:
        print("vidpipe: configuration error: {}".format(exc), file=sys.stderr)
        return EX_CONFIG
    except OSError as exc:
        if os.environ.get("DEBUG"):
            traceback.print_exc()
        print("vidpipe: {}".format(exc), file=sys.stderr)
        return EX_UNAVAILABLE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the last line of defence: one line, not a traceback
        if os.environ.get("DEBUG"):
            traceback.print_exc()
        else:
            print("vidpipe: internal error: {}: {} (run with DEBUG=1 for details)".format(
                type(exc).__name__, exc), file=sys.stderr)
        return 1
    return 2
