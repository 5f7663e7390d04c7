"""The payload boundary: what is in a FRAME or RESULT message besides its
header, written on one side and read on the other.

=============  =====================  =====================
               writer                 reader
=============  =====================  =====================
frames         :class:`FrameWriter`   :class:`FrameReader`
               (decoder)              (handler)
results        :class:`ResultWriter`  :class:`ResultReader`
               (handler)              (collector)
=============  =====================  =====================

Each hides whether the pixels travel through shared memory or inline, and
in which encoding (:mod:`vidpipe.link.encodings`); the roles only call these names.
"""

from vidpipe.link.payload.frames import FrameReader, FrameWriter
from vidpipe.link.payload.results import ResultReader, ResultWriter

__all__ = ["FrameReader", "FrameWriter", "ResultReader", "ResultWriter"]
