"""What the roles say about themselves: the status board, the
Prometheus metrics and the collector's web server."""
