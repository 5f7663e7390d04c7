"""``vidpipe(1)`` made from the command's own argument parser, at package
build time (``python3 -m vidpipe.tools.manpage > vidpipe.1``): every
subcommand and option the CLI has is on the page, with the help text the
CLI prints, so the two cannot drift. The prose around them is here."""

import argparse
import datetime
import os
import sys
from typing import List, Optional

DESCRIPTION = r""".SH DESCRIPTION
.B vidpipe
reads frames from V4L2 cameras, RTSP/HTTP streams, video files or a built\-in
test pattern with one decoder per camera, hands each frame over ZeroMQ to one
of any number of handler processes that run a chain of processing stages, and
puts the results back in order in a collector that measures end\-to\-end
latency and feeds outputs (live preview, /metrics, recording, MQTT and AMQP
events). A frame that no handler can take is dropped and counted, never
queued: every frame read is either processed or accounted for with a reason.
.PP
On an installed system the roles run as the systemd units
.BR vid\-decoder@CAMERA.service ,
.B vid\-handler@N.service
and
.BR vid\-collector.service ,
grouped by
.BR vidpipe.target .
udev starts a decoder for every V4L2 capture device that appears, named by
.BR "vidpipe udev\-name" .
"""

TAIL = r""".SH FILES
.TP
.I /etc/vidpipe/pipeline.toml
Configuration; every key is documented in the file itself.
.TP
.I /run/vidpipe/
Sockets and shared-memory rings of the services on this host.
.TP
.I /run/vidpipe/status/
What each running role reports: read by \fBvidpipe status\fR and /metrics.
.TP
.I /var/lib/vidpipe/recordings/
Recorded segments (output "record"), kept within the retention limits;
only files named by vidpipe are ever deleted, and
.B apt purge
keeps them.
.TP
.I /var/lib/vidpipe/spool/
What the MQTT and AMQP outputs keep until the broker has it.
.TP
.I /var/lib/vidpipe\-udev/cameras.json
Camera names given to devices, kept across reboots and replugging; written
by the udev helper (root) only.
.SH EXIT STATUS
0 done; 1 unexpected error (set
.B DEBUG=1
for a traceback); 2 usage; 69 a socket could not be bound; 78 configuration
error (the message names the file and the key; the units do not restart on it).
.SH EXAMPLES
.nf
systemctl enable \-\-now vid\-handler@{1..4}
vidpipe check\-config && systemctl restart vidpipe.target
systemctl status 'vid\-*'
vidpipe status
vidpipe tap cam0 \-\-stats
xdg\-open http://127.0.0.1:8090/
.fi
.SH SEE ALSO
.BR systemctl (1),
.BR udevadm (8),
.I /usr/share/doc/vidpipe/README.md
and the guides in
.IR /usr/share/doc/vidpipe/docs/ .
"""


def roff(text: str) -> str:
    """``text`` safe in a roff line: backslashes and hyphens escaped, no
    line starting with a control character."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text[:1] in (".", "'") else text


def subcommands(parser: argparse.ArgumentParser) -> List[argparse.Action]:
    """The subparsers' choices, in the order the CLI declares them."""
    found = [a for a in parser._actions  # noqa: SLF001 (argparse has no public walk)
             if isinstance(a, argparse._SubParsersAction)]
    return list(found[0]._choices_actions) if found else []


def _options(sub: argparse.ArgumentParser) -> List[str]:
    out = []
    for action in sub._actions:  # noqa: SLF001
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        if action.option_strings:
            name = ", ".join(action.option_strings)
            if action.nargs != 0:
                name += " " + (action.metavar or action.dest.upper())
        else:
            name = action.metavar or ("|".join(action.choices) if action.choices
                                      else action.dest.upper())
        out.append(".TP\n.B {}\n{}".format(roff(name), roff(action.help or "")))
    return out


def render(parser: argparse.ArgumentParser, version: str, date: str) -> str:
    chooser = {a.dest: a for a in subcommands(parser)}
    subparsers = [a for a in parser._actions  # noqa: SLF001
                  if isinstance(a, argparse._SubParsersAction)][0]
    page = [".\\\" Made by vidpipe.tools.manpage from the CLI's parser; do not edit.",
            '.TH VIDPIPE 1 "{}" "vidpipe {}" "User Commands"'.format(date, version),
            ".SH NAME", "vidpipe \\- " + roff(parser.description or ""),
            ".SH SYNOPSIS"]
    for name in subparsers.choices:
        page.append(".B vidpipe\n.RB [ \\-\\-config\n.IR FILE ]\n.B {}\n.RI [ OPTIONS ]\n.br"
                    .format(roff(name)))
    page.append(DESCRIPTION.rstrip())
    page.append(".SH COMMANDS")
    for name, sub in subparsers.choices.items():
        page.append(".SS {}".format(roff(name)))
        page.append(roff(chooser[name].help or ""))
        if sub.add_help:
            page.append(".RS")
            page.extend(_options(sub))
            page.append(".RE")
        else:
            page.append("(\\fBvidpipe {} \\-\\-help\\fR lists its options.)".format(roff(name)))
    page.append(".SH OPTIONS")
    page.extend(_options(parser))
    page.append(TAIL.rstrip())
    return "\n".join(page) + "\n"


def build_date() -> str:
    """The date of the build: SOURCE_DATE_EPOCH (reproducible builds) or today."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = datetime.datetime.utcfromtimestamp(int(epoch)) if epoch and epoch.isdigit() \
        else datetime.datetime.utcnow()
    return when.strftime("%B %Y")


def main(argv: Optional[List[str]] = None) -> int:
    from vidpipe import __version__
    from vidpipe.cli import _parser

    sys.stdout.write(render(_parser(), __version__, build_date()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
