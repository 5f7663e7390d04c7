"""Commands an operator runs, not services: ``vidpipe demo`` (demo), ``vidpipe
bench`` (bench), ``vidpipe tap`` (tapclient) and ``vidpipe status`` (status).
Only the CLI imports them; they may import anything else of vidpipe's."""
