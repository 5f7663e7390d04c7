"""vidpipe: realtime video processing for edge Linux boxes.

One decoder per camera stamps and distributes frames over ZeroMQ to N handler
processes; a collector puts results back in order and feeds outputs.
"""

__version__ = "0.3.0"
