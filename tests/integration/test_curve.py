"""CurveZMQ on tcp:// links: right keys work, wrong keys and plaintext get nothing."""

import os
import stat
from pathlib import Path
from typing import Any, Dict

import zmq
import zmq.auth

from conftest import Role, free_port, run_cli
from helpers import accounted, camera, load_drops_only, wait_exit
from vidpipe.link import wire
from vidpipe.tools.tomlwrite import dump_toml


def keys(directory: Path) -> Path:
    for name, allow in (("server", False), ("client", True), ("rogue", False)):
        args = ["keygen", name, "--dir", str(directory)] + (["--allow"] if allow else [])
        result = run_cli(*args)
        assert result.returncode == 0, result.stderr
    return directory


def test_keygen_writes_a_private_secret_and_never_overwrites(short_tmp: Path) -> None:
    keys(short_tmp / "keys")
    secret = short_tmp / "keys" / "client.key_secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE((short_tmp / "keys" / "client.key").stat().st_mode) == 0o644
    assert "secret-key" in secret.read_text()
    assert "secret-key" not in (short_tmp / "keys" / "allowed" / "client.key").read_text()
    assert sorted(os.listdir(str(short_tmp / "keys" / "allowed"))) == ["client.key"]
    again = run_cli("keygen", "client", "--dir", str(short_tmp / "keys"))
    assert again.returncode != 0 and "exists" in again.stderr


def test_curve_without_keys_is_a_config_error_naming_the_key(short_tmp: Path) -> None:
    path = short_tmp / "p.toml"
    path.write_text('[security]\ncurve = true\nkeys_dir = "{}"\n'.format(short_tmp / "none"))
    result = run_cli("--config", str(path), "check-config")
    assert result.returncode == 78
    assert "security.server_key" in result.stderr and "vidpipe keygen server" in result.stderr


def _config(pipeline: Any, keydir: Path, port: int, **security: Any) -> Dict[str, Any]:
    sec = dict({"curve": True, "keys_dir": str(keydir)}, **security)
    return {
        "pipeline": {"heartbeat_ms": 200},
        "cameras": {"cam0": camera(60, width=320, height=240, fps=20, wait=1,
                                   bind="tcp://127.0.0.1:{}".format(port))},
        "handlers": {"stages": ["gray"]},
        "collector": {"bind": "tcp://127.0.0.1:{}".format(port + 1), "exit_on_eos": True},
        "security": sec,
    }


def test_right_keys_work_and_wrong_keys_or_plaintext_get_nothing(pipeline: Any,
                                                                zmq_ctx: Any) -> None:
    keydir = keys(pipeline.root / "keys")
    port = free_port()  # the floor suites run side by side: no fixed port
    pipeline.write_config(_config(pipeline, keydir, port))
    # the same site's config but with a key nobody admitted (its own runtime
    # directory, so it cannot reach the decoder by ipc either)
    data = _config(pipeline, keydir, port, client_key="rogue")
    data["pipeline"]["runtime_dir"] = str(pipeline.root / "rogue-run")
    # the rogue's results go to a Curve server of its own that takes anyone:
    # with its link to "a collector" up, it asks the decoder for frames at
    # once (a handler whose results cannot go anywhere waits 10 s first)
    sink = zmq_ctx.socket(zmq.PULL)
    sink.setsockopt(zmq.LINGER, 0)
    public, secret = zmq.auth.load_certificate(str(keydir / "server.key_secret"))
    sink.curve_server, sink.curve_publickey, sink.curve_secretkey = True, public, secret
    sink_port = free_port()
    sink.bind("tcp://127.0.0.1:{}".format(sink_port))
    data["collector"].update(outputs=["log"], connect="tcp://127.0.0.1:{}".format(sink_port))
    rogue_config = pipeline.root / "rogue.toml"
    rogue_config.write_text(dump_toml(data))

    collector = pipeline.start("collector", "main")
    rogue = Role(pipeline.root, rogue_config, "handler", "9")
    pipeline.roles.append(rogue)
    rogue.ready()
    # a plaintext peer that speaks vidpipe's protocol but no Curve
    ctx = zmq_ctx
    plain = ctx.socket(zmq.DEALER)
    plain.setsockopt(zmq.LINGER, 0)
    plain.connect("tcp://127.0.0.1:{}".format(port))
    plain.send_multipart(wire.control_parts(wire.CREDIT, {"handler": "plain", "window": 8}))
    try:
        pipeline.start("handler", "1")
        decoder = pipeline.start("decoder", "cam0")
        got_plain = plain.poll(4000)
        assert wait_exit(decoder, 30, pipeline) == 0
        assert wait_exit(collector, 30, pipeline) == 0
    finally:
        plain.close(0)
        sink.close(0)
        ctx.term()

    acc = accounted(pipeline.results(), "cam0")
    assert sorted(acc) == list(range(60)), pipeline.logs()
    ok = [r for r in acc.values() if r["status"] == "ok"]
    # every frame went to the admitted handler, or was dropped for want of
    # room on a loaded box (the floors run side by side): never elsewhere
    assert len(ok) >= 40 and {r["meta"]["handler"] for r in ok} == {"1"}
    assert load_drops_only(acc) == [], load_drops_only(acc)
    assert not got_plain  # the plaintext peer got nothing
    log = decoder.output()
    assert "handler 1 joined" in log
    assert "handler 9 joined" not in log and "handler plain joined" not in log, log
    assert "refused a Curve client" in log, log  # the rogue key is named in the log
