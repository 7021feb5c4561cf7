"""Writing one loop iteration's broadcast frames to many sockets at once.

Not a handler: the hub's outbox hands every flush to `batch_writer`, which
sends straight to the sockets that can take it through the optional C helper
`_send_many` (built by setup.py from ``_send_many.c``; one ``send()`` per
socket without the GIL, spread over threads) and leaves the rest to each
peer's sink. The two live together because neither is used without the other,
and both write to sockets, which `hub/` never does.
"""
