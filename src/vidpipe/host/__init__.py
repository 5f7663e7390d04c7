"""What this box has: CPU cores and accelerators, the software vidpipe runs
with, and the systemd generator that grants accelerators to handlers."""
