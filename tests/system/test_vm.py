"""The install-and-operate story on a real Debian 12 with systemd, udev and apt,
in a QEMU VM with two virtual (vivid) cameras. See guest/scenario.sh."""

import json
from pathlib import Path

import pytest

from conftest import ROOT
from system import vm
from system.conftest import need_root

pytestmark = pytest.mark.system


def test_install_and_operate_in_a_debian_vm(deb: Path, tmp_path: Path) -> None:
    need_root("the VM system test builds a root file system with debootstrap")
    out = vm.run_scenario(deb, tmp_path)
    steps = out["steps"]
    summary = "\n".join("  {step}: {status} - {detail}".format(**s) for s in steps)
    report = ROOT / "build" / "system-test.json"
    report.parent.mkdir(exist_ok=True)
    report.write_text(json.dumps({k: out[k] for k in ("log", "qemu_exit", "steps", "result")},
                                 indent=1))
    (ROOT / "build" / "vm-journal.txt").write_text(out["journal"] or out["console"])
    print("\n".join(out["log"]))
    print(summary)
    failed = [s for s in steps if s["status"] != "ok"]
    if failed or not out["result"] or not out["result"].get("ok"):
        where = failed[0]["step"] if failed else (steps[-1]["step"] + " (then stopped)"
                                                  if steps else "boot")
        # what systemd did to the roles comes first: the report shows the start of this
        lifecycle = "\n".join([line for line in out["journal"].splitlines()
                               if "systemd[1]: " in line and "vid-" in line][-40:])
        tail = out["journal"][-4000:] or out["console"][-4000:]
        pytest.fail("system test failed at step '{}':\n{}\n--- systemd and the roles (last 40)"
                    "\n{}\n--- journal (tail; all of it in build/vm-journal.txt)\n{}\n--- status"
                    "\n{}".format(where, summary, lifecycle, tail, out["status"][-3000:]))
    assert [s["step"] for s in steps] == [
        "install", "configure", "udev-starts-decoders", "enable-handlers", "frames-flow",
        "operator-view", "broker", "rtsp-camera", "pinning", "watchdog", "decoder-restart", "config-typo", "camera-disconnect",
        "unplug-replug", "security", "upgrade", "purge"]
    facts = out["result"]["facts"]
    for unit in ("vid-decoder@cam0.service", "vid-handler@1.service", "vid-collector.service"):
        assert float(facts["security_" + unit]) <= 3.0, facts
    # the only watchdog kill is the planned one (step "watchdog" stops handler 2):
    # a role busy with a backlog must still ping (the collector did not, once)
    unplanned = [line for line in out["journal"].splitlines()
                 if "Watchdog timeout" in line and "vid-handler@2.service" not in line]
    assert not unplanned, "\n".join(unplanned)
