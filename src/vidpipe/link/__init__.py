"""How frames and results travel between the roles: the wire format, the
ZeroMQ sockets, payload encodings, the shared-memory ring, frame and result
payloads, dispatch and intake, ordering, taps and CurveZMQ."""
