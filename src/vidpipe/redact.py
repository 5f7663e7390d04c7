"""Credentials out of everything vidpipe shows.

A camera URL may carry a password in its user part (``rtsp://u:pw@host``) or
in its query (``?user=admin&pwd=secret``, ``?token=…``). Every place a source
is logged, printed or published (journal, STATUS, the status board and
``/status.json``, metrics labels, the demo's banner) shows :func:`url` of it.
"""

import re

# the user part runs to the authority's last "@": a password may hold one
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/?#\s]*)@")
# a query key that names a credential anywhere in it (pw, loginpas, passwd,
# api_key, X-Auth-Token, ...): hiding a harmless value costs nothing
_SECRET_KEYS = re.compile(
    r"(?i)(user|login|pass|pwd|^pw|psw|token|auth|key|secret|sig|cred)")
_QUERY_PAIR = re.compile(r"(?P<sep>[?&;])(?P<key>[^=&;#]+)=(?P<value>[^&;#]*)")


def url(text: str) -> str:
    """``text`` with the password of its user part and the values of
    credential-like query parameters replaced by ``***``."""

    def userinfo(match: "re.Match[str]") -> str:
        user = match.group("user")
        name, colon, _secret = user.partition(":")
        # a user part with no colon may itself be a token: hide all of it then
        return match.group("scheme") + (name + ":***" if colon else "***") + "@"

    def pair(match: "re.Match[str]") -> str:
        if _SECRET_KEYS.search(match.group("key")):
            return "{}{}=***".format(match.group("sep"), match.group("key"))
        return match.group(0)

    return _QUERY_PAIR.sub(pair, _USERINFO.sub(userinfo, text))
