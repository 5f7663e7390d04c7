#!/bin/bash
# The vidpipe system test, run inside a Debian 12 VM by vidpipe-systest.service.
#
# /mnt/io holds vidpipe.deb, vidpipe-upgrade.deb and this script; results go
# back there: steps.jsonl (one line per step), result.json, journal.txt.
# Every step asserts what an operator would check; the first failure ends the
# run (later steps depend on earlier ones) and names the step.
set -u
IO=/mnt/io
STEPS=$IO/steps.jsonl
RESULTS=/var/lib/vidpipe/results.jsonl
export DEBIAN_FRONTEND=noninteractive
: > "$STEPS"
declare -A FACTS

log() { echo "vidpipe-systest: $*" > /dev/console; echo "vidpipe-systest: $*"; }

json_escape() { python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))'; }

record() {  # record STEP ok|fail DETAIL
    local detail
    detail=$(printf '%s' "$3" | json_escape)
    printf '{"step": "%s", "status": "%s", "detail": %s, "t": %s}\n' "$1" "$2" "$detail" \
        "$(cut -d' ' -f1 /proc/uptime)" >> "$STEPS"
    log "$1: $2 - $3"
}

finish() {
    local facts="{" sep="" key
    for key in "${!FACTS[@]}"; do
        facts+="$sep\"$key\": $(printf '%s' "${FACTS[$key]}" | json_escape)"
        sep=", "
    done
    facts+="}"
    printf '{"ok": %s, "facts": %s}\n' "$1" "$facts" > $IO/result.json
    journalctl -b --no-pager -o short-monotonic > $IO/journal.txt 2>&1
    for unit in vid-collector vid-decoder@cam0 vid-decoder@cam1 vid-handler@1 vid-handler@2 \
                vid-handler@3; do
        systemctl status --no-pager "$unit" >> $IO/status.txt 2>&1
    done
    sync
    log "finished: ok=$1"
    systemctl poweroff --no-block
    exit 0
}

fail() { record "$CURRENT" fail "$1"; finish false; }
pass() { record "$CURRENT" ok "$1"; }

# wait_until SECONDS COMMAND...: poll until COMMAND succeeds
wait_until() {
    local limit=$1; shift
    local end=$(( $(date +%s) + limit ))
    while [ "$(date +%s)" -lt "$end" ]; do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    "$@" >/dev/null 2>&1
}

prop() { systemctl show -p "$2" --value "$1"; }
status_text() { prop "$1" StatusText; }
ok_count() {  # ok results of a camera so far
    [ -f "$RESULTS" ] || { echo 0; return; }
    grep -c "\"camera\":\"$1\",\"seq\":[0-9]*,\"status\":\"ok\"" "$RESULTS"
}
more_results() {  # more_results CAMERA THAN
    [ "$(ok_count "$1")" -gt "$2" ]
}
in_order() {  # sequence numbers of a camera increase within each decoder run
    python3 - "$1" "$2" <<'EOF'
import json, sys
seqs = [r["seq"] for r in map(json.loads, open("/var/lib/vidpipe/results.jsonl"))
        if r["camera"] == sys.argv[1] and not r.get("late")]
runs = sum(1 for a, b in zip(seqs, seqs[1:]) if b <= a)   # a restart starts again
sys.exit(0 if seqs and runs <= int(sys.argv[2]) else 1)
EOF
}
active() { [ "$(prop "$1" ActiveState)" = active ]; }

log "starting; kernel $(uname -r)"

# ---------------------------------------------------------------- 1. install
CURRENT=install
cp $IO/vidpipe.deb $IO/vidpipe-upgrade.deb /root/
if ! out=$(cd /root && apt-get install -y ./vidpipe.deb 2>&1); then
    fail "apt-get install ./vidpipe.deb failed offline: $(echo "$out" | tail -5)"
fi
dpkg -s vidpipe | grep -q "Status: install ok installed" || fail "vidpipe not installed"
id -nG vidpipe | grep -qw video || fail "user vidpipe missing or not in group video: $(id vidpipe 2>&1)"
[ -d /run/vidpipe ] || fail "/run/vidpipe missing"
wait_until 60 active vid-collector || fail "vid-collector not started by the package: $(status_text vid-collector)"
pass "installed offline; user vidpipe in video; collector running"

# ---------------------------------------------------------------- 2. configure (as an operator would)
CURRENT=configure
CONF=/etc/vidpipe/pipeline.toml
# software-emulated CPUs are 10-50x slower than real ones: allow more latency
# before frames count as stale, and keep the cameras small and slow (as on a weak
# box) so that restarted services get CPU to start in
sed -i 's/^#max_latency_ms = 250$/max_latency_ms = 3000/' $CONF
sed -i 's/^#width = 640$/width = 320/; s/^#height = 480$/height = 240/; s/^#fps = 30.0$/fps = 10.0/' $CONF
# mqtt from the start: no broker on the box yet (it comes in step 5c), so the
# collector spools and keeps trying
sed -i 's/^outputs = \["log", "preview"\]$/outputs = ["log", "preview", "jsonl", "record", "mqtt"]/' $CONF
grep -q '^outputs = \["log", "preview", "jsonl", "record", "mqtt"\]$' $CONF \
    || fail "the shipped pipeline.toml has no 'outputs = [\"log\", \"preview\"]' line to edit"
cat >> $CONF <<'EOF'
jsonl_path = "/var/lib/vidpipe/results.jsonl"
metrics = true
record_max_bytes = 4194304
record_min_free_mb = 16

[handlers.1]
cpus = [1]

[cameras.cam1]
source = "auto"
width = 320
height = 240
fps = 10.0
EOF
out=$(vidpipe check-config 2>&1) || fail "check-config rejects the edited file: $out"
systemctl restart vid-collector || fail "collector restart failed"
pass "$out"

# ---------------------------------------------------------------- 3. plug two cameras
CURRENT=udev-starts-decoders
modprobe vivid n_devs=2 node_types=0x1,0x1 || fail "modprobe vivid failed"
wait_until 90 active vid-decoder@cam0 || fail "udev did not start vid-decoder@cam0: $(ls -l /dev/vidpipe 2>&1)"
wait_until 60 active vid-decoder@cam1 || fail "udev did not start vid-decoder@cam1"
FACTS[cam0_link]=$(readlink -f /dev/vidpipe/cam0)
FACTS[cam1_link]=$(readlink -f /dev/vidpipe/cam1)
pass "cam0 -> ${FACTS[cam0_link]}, cam1 -> ${FACTS[cam1_link]}"

# ---------------------------------------------------------------- 4. handlers as docs/operating.md says
CURRENT=enable-handlers
t0=$(date +%s.%N)
systemctl enable --now vid-handler@{1..4} vid-collector || fail "systemctl enable --now failed"
t1=$(date +%s.%N)
for n in 1 2 3 4; do active vid-handler@$n || fail "vid-handler@$n not active: $(status_text vid-handler@$n)"; done
# READY comes before the stages are built; then each handler joins the decoders
joined() { [ "$(journalctl -u 'vid-handler@*' --no-pager -o cat | grep -c 'after READY')" -ge 4 ]; }
wait_until 120 joined || fail "handlers did not finish preparing in 120 s: $(status_text vid-handler@1)"
t2=$(date +%s.%N)
FACTS[handlers_ready_s]=$(python3 -c "print(round($t1 - $t0, 1))")
FACTS[handlers_joined_s]=$(python3 -c "print(round($t2 - $t0, 1))")
FACTS[handler_prepare]=$(journalctl -u 'vid-handler@*' --no-pager -o cat | grep -o 'ready [0-9.]* s after READY' | tr '\n' ';')
pass "4 handlers active: READY in ${FACTS[handlers_ready_s]} s (4 at once), all working after ${FACTS[handlers_joined_s]} s (${FACTS[handler_prepare]})"

# ---------------------------------------------------------------- 5. frames flow
CURRENT=frames-flow
wait_until 30 more_results cam0 10 || fail "no frames from cam0 within 30 s; collector: $(status_text vid-collector)"
wait_until 30 more_results cam1 10 || fail "no frames from cam1 within 30 s; collector: $(status_text vid-collector)"
in_order cam0 0 || fail "cam0 results out of order"
in_order cam1 0 || fail "cam1 results out of order"
FACTS[collector_status]=$(status_text vid-collector)
FACTS[handler1_status]=$(status_text vid-handler@1)
FACTS[decoder0_status]=$(status_text vid-decoder@cam0)
echo "${FACTS[collector_status]}" | grep -Eq "cam0: [0-9.]+ fps, latency p50 [0-9.]+" \
    || fail "collector status has no latency figures: ${FACTS[collector_status]}"
systemctl status --no-pager vid-handler@1 | grep -Eq "Status: \"handler 1: [0-9.]+ fps, processed [0-9]+" \
    || fail "systemctl status vid-handler@1 shows no STATUS line: $(systemctl status --no-pager vid-handler@1 | head -8)"
pass "cam0 $(ok_count cam0) and cam1 $(ok_count cam1) results, in order; ${FACTS[collector_status]}"

# ---------------------------------------------------------------- 5b. what an operator looks at
CURRENT=operator-view
out=$(vidpipe status 2>&1) || fail "vidpipe status failed: $out"
FACTS[status_table]=$out
echo "$out" | grep -Eq "^decoder +cam0 +cam0 +running \(active/running\)" \
    || fail "vidpipe status shows no running cam0 decoder: $out"
echo "$out" | grep -Eq "^handler +1 .*running \(active/running\)" || fail "no handler 1 in: $out"
echo "$out" | grep -Eq "^collector +main .*running \(active/running\)" || fail "no collector in: $out"
out=$(python3 - 2>&1 <<'EOF'
import os, re, subprocess, time, urllib.request
# a role's numbers reach /metrics through its status-board file: a few tries
for attempt in range(20):
    page = urllib.request.urlopen("http://127.0.0.1:8090/metrics", timeout=20).read().decode()
    found = re.search(r'vidpipe_frames_total\{camera="cam0",name="cam0",role="decoder"\} ([0-9]+)', page)
    if found and int(found.group(1)) > 0:
        break
    time.sleep(0.5)
else:
    board = subprocess.run(["ls", "-la", "--time-style=full-iso", "/run/vidpipe", "/run/vidpipe/status"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True).stdout
    entry = "/run/vidpipe/status/decoder-cam0.json"
    raise AssertionError("no cam0 decoder in /metrics for 10 s; the board:\n{}\n{}: {}\n{}".format(
        board, entry, open(entry).read()[:1500] if os.path.exists(entry) else "missing", page[:1500]))
assert 'vidpipe_latency_seconds_count{camera="cam0"' in page, page[:3000]
jpeg = urllib.request.urlopen("http://127.0.0.1:8090/snapshot/cam0.jpg", timeout=20).read()
assert jpeg[:2] == b"\xff\xd8", jpeg[:20]
print("decoder frames_total", found.group(1), "snapshot", len(jpeg), "bytes")
EOF
) || fail "metrics or preview from the hardened collector: $out"
web=$out
out=$(timeout 60 vidpipe tap cam0 --frames 5 --json 2>&1) || fail "vidpipe tap cam0: $out"
echo "$out" | grep -q '"received": 5' || fail "the tap did not get 5 frames: $out"
recorded() { ls /var/lib/vidpipe/recordings/cam0/ 2>/dev/null | grep -q '\.mp4$'; }
wait_until 30 recorded || fail "no recording in /var/lib/vidpipe/recordings/cam0: $(journalctl -u vid-collector --no-pager | grep -i record | tail -3)"
pass "status table ok; $web; tap got 5 frames; recording $(ls /var/lib/vidpipe/recordings/cam0 | head -1)"

# ---------------------------------------------------------------- 5c. a broker arrives
CURRENT=broker
echo "$(status_text vid-collector)" | grep -q "broker mqtt" \
    || fail "collector STATUS does not show the mqtt output waiting: $(status_text vid-collector)"
# (Debian's mosquitto is in the image, disabled: it arrives now)
out=$(systemctl start mosquitto 2>&1) || fail "systemctl start mosquitto failed: $out"
wait_until 30 active mosquitto || fail "mosquitto not running: $(status_text mosquitto)"
connected() { status_text vid-collector | grep -q "broker mqtt connected"; }
wait_until 30 connected || fail "the collector did not connect to mosquitto within 30 s: $(status_text vid-collector); $(journalctl -u vid-collector --no-pager -o cat | grep -i mqtt | tail -3)"
# retained availability and state: a subscriber arriving now gets them at once
out=$(timeout 30 mosquitto_sub -h 127.0.0.1 -t 'vidpipe/availability' -t 'vidpipe/cam0/state' -v -C 3 -W 25 2>&1) \
    || fail "mosquitto_sub got no retained availability and state: $out"
echo "$out" | grep -q '^vidpipe/availability online$' || fail "availability is not online: $out"
python3 - "$out" <<'EOF' || fail "the cam0 state message is not what docs/outputs.md says: $out"
import json, sys
line = [l for l in sys.argv[1].splitlines() if l.startswith("vidpipe/cam0/state ")][0]
state = json.loads(line.split(" ", 1)[1])
assert state["v"] == 2 and state["camera"] == "cam0" and state["processed"] > 0, state
EOF
FACTS[mqtt_status]=$(status_text vid-collector | grep -o "broker mqtt[^;]*")
pass "mosquitto started; the collector connected (${FACTS[mqtt_status]}); retained availability online and cam0 state received"

# ---------------------------------------------------------------- 5d. an IP camera
# tests/rtsp_camera.py (GStreamer's RTSP server) stands in for a camera on the
# LAN; its password lives only in a credentials file the operator writes,
# and must show nowhere: journal, status, metrics, command lines.
CURRENT=rtsp-camera
PW="vidpipe-systest-Pw7"
install -d -m 0750 -o root -g vidpipe /etc/vidpipe/credentials
printf 'viewer\n%s\n' "$PW" > /etc/vidpipe/credentials/cam2
chown root:vidpipe /etc/vidpipe/credentials/cam2
chmod 0640 /etc/vidpipe/credentials/cam2
systemd-run --unit=test-camera --description="test RTSP camera" \
    /usr/bin/python3 $IO/rtsp_camera.py 8554 320 240 5 /etc/vidpipe/credentials/cam2 \
    || fail "the test camera did not start"
answers() { python3 -c 'import socket; socket.create_connection(("127.0.0.1", 8554), 2).close()'; }
wait_until 60 answers || fail "the test camera does not listen on 8554: $(journalctl -u test-camera --no-pager | tail -5)"
cat >> $CONF <<'EOF'

[cameras.cam2]
source = "rtsp://127.0.0.1:8554/jpeg"
credentials_file = "/etc/vidpipe/credentials/cam2"
width = 160
height = 120
fps = 5.0
# the camera's own H.264 kept as it came, beside the JPEG stream analysed
record = "passthrough"
record_url = "rtsp://127.0.0.1:8554/h264"
EOF
out=$(vidpipe check-config 2>&1) || fail "check-config rejects the camera: $out"
systemctl start vid-decoder@cam2 || fail "vid-decoder@cam2 did not start: $(status_text vid-decoder@cam2)"
wait_until 90 more_results cam2 10 || fail "no frames from the RTSP camera in 90 s: $(status_text vid-decoder@cam2); $(journalctl -u vid-decoder@cam2 --no-pager -o cat | tail -5)"
in_order cam2 0 || fail "cam2 results out of order"
FACTS[rtsp_decoder]=$(journalctl -u vid-decoder@cam2 --no-pager -o cat | grep -o "decoding [^;]*" | head -1 | cut -c1-100)
# (the password reaches the check in its environment: its command line is looked at too)
out=$(PW="$PW" python3 - 2>&1 <<'EOF'
import glob, os, subprocess, urllib.request
password = os.environ["PW"]
seen = {"journal": subprocess.run(["journalctl", "-b", "--no-pager"], stdout=subprocess.PIPE,
                                  universal_newlines=True).stdout,
        "vidpipe status --json": subprocess.run(["vidpipe", "status", "--json"],
                                                stdout=subprocess.PIPE,
                                                universal_newlines=True).stdout}
for page in ("metrics", "status.json"):
    seen["/" + page] = urllib.request.urlopen("http://127.0.0.1:8090/" + page,
                                              timeout=20).read().decode()
for path in glob.glob("/proc/[0-9]*/cmdline"):
    try:
        seen[path] = open(path, "rb").read().decode(errors="replace")
    except OSError:
        pass
assert "cam2" in seen["vidpipe status --json"], seen["vidpipe status --json"][:2000]
leaks = [where for where, text in seen.items() if password in text]
assert not leaks, leaks
print("looked in {} places".format(len(seen)))
EOF
) || fail "the camera's password shows: $out"
leaks=$out
# passthrough: a segment being written; a stop closes it; the collector serves
# it to an account of group vidpipe (root here) with range requests, and to
# no other local account (the local-account check: no password on 127.0.0.1)
writing() { ls /var/lib/vidpipe/recordings/cam2/ 2>/dev/null | grep -q '\.camera\.part\.mp4$'; }
wait_until 90 writing || fail "no passthrough segment being written in 90 s: $(status_text vid-decoder@cam2); $(journalctl -u vid-decoder@cam2 --no-pager -o cat | grep -i record | tail -5)"
sleep 8  # a few seconds of the camera in it
systemctl stop vid-decoder@cam2
segment=$(ls /var/lib/vidpipe/recordings/cam2/ | grep '\.camera\.mp4$' | tail -1)
[ -n "$segment" ] || fail "the stop did not close the passthrough segment: $(ls -la /var/lib/vidpipe/recordings/cam2/)"
served=$(python3 - "$segment" 2>&1 <<'EOF'
import os, sys, urllib.request
name = sys.argv[1]
url = "http://127.0.0.1:8090/recordings/cam2/" + name
body = open("/var/lib/vidpipe/recordings/cam2/" + name, "rb").read()
assert body[4:8] == b"ftyp", body[:16]
with urllib.request.urlopen(url, timeout=30) as answer:
    assert answer.status == 200 and answer.read() == body, answer.status
request = urllib.request.Request(url, headers={"Range": "bytes=0-15"})
with urllib.request.urlopen(request, timeout=30) as answer:
    assert answer.status == 206 and answer.read() == body[:16], answer.status
print(len(body), "bytes")
EOF
) || fail "the passthrough segment is not served to root: $served"
refused=$(runuser -u nobody -- python3 - "$segment" 2>&1 <<'EOF'
import sys, urllib.error, urllib.request
try:
    urllib.request.urlopen("http://127.0.0.1:8090/recordings/cam2/" + sys.argv[1], timeout=30)
except urllib.error.HTTPError as exc:
    print(exc.code)
else:
    print("served")
EOF
)
case "$refused" in 401|403) ;; *) fail "the segment was served to user nobody: $refused" ;; esac
systemctl stop test-camera  # spare the emulated CPU for what follows
pass "cam2 (RTSP, credentials file): $(ok_count cam2) results in order, ${FACTS[rtsp_decoder]:-decoder not named}; password in none of: journal, status --json, /metrics, /status.json, command lines ($leaks); passthrough segment $segment ($served) served to root with ranges, refused to nobody ($refused)"

# ---------------------------------------------------------------- 6. pinning
CURRENT=pinning
pid=$(prop vid-handler@1 MainPID)
pinned=$(awk '/^Cpus_allowed_list/ {print $2}' /proc/$pid/status)
[ "$pinned" = 1 ] || fail "vid-handler@1 (pid $pid) Cpus_allowed_list is '$pinned', want 1"
pass "vid-handler@1 Cpus_allowed_list: $pinned"

# ---------------------------------------------------------------- 7. watchdog restarts a hung handler
CURRENT=watchdog
old=$(prop vid-handler@2 MainPID)
kill -STOP "$old"
restarted() { [ "$(prop vid-handler@2 NRestarts)" -ge 1 ] && [ "$(prop vid-handler@2 MainPID)" != "$old" ] && active vid-handler@2; }
wait_until 120 restarted || fail "stopped handler not restarted by the watchdog: NRestarts=$(prop vid-handler@2 NRestarts) $(journalctl -u vid-handler@2 --no-pager | tail -3)"
journalctl -u vid-handler@2 --no-pager | grep -q "Watchdog timeout" || fail "no watchdog timeout in the journal"
n0=$(ok_count cam0)
wait_until 30 more_results cam0 "$((n0 + 5))" || fail "frames stopped after the watchdog restart"
pass "watchdog killed pid $old; NRestarts=$(prop vid-handler@2 NRestarts); frames keep flowing"

# ---------------------------------------------------------------- 8. a killed decoder comes back
CURRENT=decoder-restart
old=$(prop vid-decoder@cam0 MainPID)
kill -9 "$old"
back() { [ "$(prop vid-decoder@cam0 NRestarts)" -ge 1 ] && active vid-decoder@cam0 && [ "$(prop vid-decoder@cam0 MainPID)" != "$old" ]; }
wait_until 120 back || fail "killed decoder not restarted: $(status_text vid-decoder@cam0)"
n0=$(ok_count cam0)
wait_until 60 more_results cam0 "$((n0 + 5))" || fail "cam0 frames did not resume after the decoder restart"
pass "decoder restarted (NRestarts=$(prop vid-decoder@cam0 NRestarts)); cam0 frames resumed"

# ---------------------------------------------------------------- 9. a config typo does not restart-loop
CURRENT=config-typo
cp $CONF /root/pipeline.good
printf '\n[handlers.3]\ncpu = [0]\n' >> $CONF
restarts=$(prop vid-handler@3 NRestarts)
systemctl restart vid-handler@3 && fail "restart with a typo in the config succeeded"
journalctl -u vid-handler@3 --no-pager | grep -q "handlers.3.cpu: unknown key (did you mean 'cpus'?)" \
    || fail "journal does not name the key: $(journalctl -u vid-handler@3 --no-pager | tail -3)"
sleep 8
[ "$(prop vid-handler@3 ActiveState)" = failed ] || fail "unit is $(prop vid-handler@3 ActiveState), want failed"
[ "$(prop vid-handler@3 NRestarts)" = "$restarts" ] || fail "unit restart-looped: NRestarts $(prop vid-handler@3 NRestarts)"
[ "$(prop vid-handler@3 ExecMainStatus)" = 78 ] || fail "exit status $(prop vid-handler@3 ExecMainStatus), want 78"
cp /root/pipeline.good $CONF
systemctl restart vid-handler@3 || fail "fixed config: restart failed"
pass "exit 78, key named in the journal, no restart loop, fixed config brings it back"

# ---------------------------------------------------------------- 10. camera unplugged and back (vivid's disconnect control)
CURRENT=camera-disconnect
restarts=$(prop vid-decoder@cam1 NRestarts)
n1=$(ok_count cam1)
v4l2-ctl -d "${FACTS[cam1_link]}" --set-ctrl disconnect=1 || fail "cannot set vivid's disconnect control"
wait_until 20 more_results cam1 "$((n1 + 5))" || fail "cam1 frames did not come back after a disconnect: $(status_text vid-decoder@cam1)"
[ "$(prop vid-decoder@cam1 NRestarts)" = "$restarts" ] || fail "decoder restarted instead of reopening"
pass "decoder reopened the camera by itself; frames flow again"

# ---------------------------------------------------------------- 11. rmmod (unplug) and modprobe (replug)
CURRENT=unplug-replug
restarts0=$(prop vid-decoder@cam0 NRestarts)
# rmmod needs both cameras closed at once: vivid's disconnect makes each
# decoder close its camera, and it reopens it within a second (as it should),
# so both are disconnected together and rmmod is tried at once, in rounds
unplugged=no
for round in $(seq 20); do
    for dev in /dev/video0 /dev/video1; do
        v4l2-ctl -d $dev --set-ctrl disconnect=1 >/dev/null 2>&1 &
    done
    wait
    for i in $(seq 20); do
        if rmmod vivid 2>/dev/null; then unplugged=yes; break 2; fi
        sleep 0.05
    done
done
[ $unplugged = yes ] || fail "rmmod vivid kept failing (a handle stays open): $(fuser -v /dev/video* 2>&1)"
sleep 4
for cam in cam0 cam1; do
    active vid-decoder@$cam || fail "vid-decoder@$cam is $(prop vid-decoder@$cam ActiveState) after unplug"
    status_text vid-decoder@$cam | grep -q "waiting for source" || fail "$cam status does not say it waits: $(status_text vid-decoder@$cam)"
done
pid=$(prop vid-decoder@cam0 MainPID)
t0=$(awk '{print $14 + $15}' /proc/$pid/stat); sleep 5; t1=$(awk '{print $14 + $15}' /proc/$pid/stat)
ticks=$((t1 - t0))
[ "$ticks" -lt 100 ] || fail "waiting decoder burns CPU: $ticks ticks in 5 s"
[ "$(prop vid-decoder@cam0 NRestarts)" = "$restarts0" ] || fail "decoder restart-looped while unplugged"
n0=$(ok_count cam0); n1=$(ok_count cam1)
modprobe vivid n_devs=2 node_types=0x1,0x1 || fail "modprobe vivid (replug) failed"
t_plug=$(date +%s)
wait_until 25 more_results cam0 "$((n0 + 3))" || fail "cam0 frames did not come back after replug: $(status_text vid-decoder@cam0)"
wait_until 25 more_results cam1 "$((n1 + 3))" || fail "cam1 frames did not come back after replug"
FACTS[replug_seconds]=$(( $(date +%s) - t_plug ))
[ "$(readlink -f /dev/vidpipe/cam0)" = "${FACTS[cam0_link]}" ] || fail "cam0 name moved to $(readlink -f /dev/vidpipe/cam0)"
[ "$(readlink -f /dev/vidpipe/cam1)" = "${FACTS[cam1_link]}" ] || fail "cam1 name moved"
pass "decoders waited (${ticks} CPU ticks in 5 s, no restarts); frames back ${FACTS[replug_seconds]} s after replug, same names"

# ---------------------------------------------------------------- 12. security scores
CURRENT=security
for unit in vid-decoder@cam0.service vid-handler@1.service vid-collector.service; do
    score=$(systemd-analyze security --no-pager "$unit" 2>/dev/null | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
    FACTS["security_$unit"]=$score
done
pass "decoder ${FACTS[security_vid-decoder@cam0.service]}, handler ${FACTS[security_vid-handler@1.service]}, collector ${FACTS[security_vid-collector.service]}"

# ---------------------------------------------------------------- 13. upgrade keeps the edited config
CURRENT=upgrade
old=$(prop vid-handler@4 MainPID)
old_decoder=$(prop vid-decoder@cam0 MainPID)
since=$(date '+%Y-%m-%d %H:%M:%S')
t0=$(date +%s)
out=$(cd /root && apt-get install -y ./vidpipe-upgrade.deb 2>&1) || fail "upgrade failed: $(echo "$out" | tail -5)"
FACTS[upgraded_to]=$(dpkg-query -W -f '${Version}' vidpipe)
grep -q '^max_latency_ms = 3000$' $CONF || fail "upgrade lost the edited pipeline.toml"
[ -f $CONF.dpkg-dist ] && fail "upgrade left a .dpkg-dist: the conffile was treated as changed"
# every role restarts at once: on an emulated CPU that takes a minute or more, so
# wait for what each one signals (READY, then the handlers' "ready ... after
# READY"), each within its unit's TimeoutStartSec, before asking for frames
for unit in vid-collector vid-decoder@cam0 vid-decoder@cam1 vid-handler@1 vid-handler@2 \
            vid-handler@3 vid-handler@4; do
    wait_until 130 active $unit || fail "$unit not running after the upgrade: $(prop $unit ActiveState) $(status_text $unit)"
done
[ "$(prop vid-handler@4 MainPID)" != "$old" ] || fail "running handler not restarted on upgrade"
[ "$(prop vid-decoder@cam0 MainPID)" != "$old_decoder" ] || fail "running decoder not restarted on upgrade"
prepared() { [ "$(journalctl -u 'vid-handler@*' --since "$since" --no-pager -o cat | grep -c 'after READY')" -ge 4 ]; }
wait_until 130 prepared || fail "handlers did not finish preparing after the upgrade: $(status_text vid-handler@4)"
n0=$(ok_count cam0)
wait_until 60 more_results cam0 "$((n0 + 3))" || fail "frames did not flow after the upgrade: $(status_text vid-collector); $(status_text vid-decoder@cam0)"
FACTS[upgrade_frames_s]=$(( $(date +%s) - t0 ))
failed_starts=$(journalctl --since "$since" --no-pager -o cat | grep -c "vid-.*\(timed out\|Failed with result\)")
[ "$failed_starts" = 0 ] || fail "a role failed while restarting: $(journalctl --since "$since" --no-pager -o cat | grep "vid-.*\(timed out\|Failed with result\)" | head -3)"
pass "upgraded to ${FACTS[upgraded_to]}; edit kept; every role restarted once, none timed out; frames again ${FACTS[upgrade_frames_s]} s after apt began"

# ---------------------------------------------------------------- 14. purge
CURRENT=purge
out=$(apt-get purge -y vidpipe 2>&1) || fail "purge failed: $(echo "$out" | tail -5)"
left=""
for path in /lib/systemd/system/vid-handler@.service /lib/systemd/system/vid-decoder@.service \
            /lib/udev/rules.d/60-vidpipe.rules /etc/vidpipe/pipeline.toml /var/lib/vidpipe-udev \
            /var/lib/vidpipe/results.jsonl /usr/bin/vidpipe; do
    [ -e $path ] && left="$left $path"
done
[ -z "$left" ] || fail "purge left:$left"
# recordings are the operator's data: kept, and nothing else of the state
kept=$(ls -A /var/lib/vidpipe 2>&1)
[ "$kept" = recordings ] || fail "after purge /var/lib/vidpipe holds: $kept (expected recordings only)"
echo "$out" | grep -q "recordings kept in /var/lib/vidpipe/recordings" || fail "purge did not say recordings are kept: $(echo "$out" | tail -5)"
running=$(systemctl list-units --no-legend --state=active 'vid-*' | wc -l)
[ "$running" = 0 ] || fail "units still running after purge: $(systemctl list-units --no-legend 'vid-*')"
pass "units, rule, conffile and state removed (recordings kept, as said); nothing running"

finish true
