"""Where frames come from: the sources by kind, the GStreamer and FFmpeg
paths, the RTSP probe, V4L2 cameras and their udev names."""
