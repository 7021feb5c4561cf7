"""The hub: rooms, membership, history, presence, fan-out and heartbeats.

Nothing in this package touches a socket or a Tornado handler: connections
are reached through the small `Sink` interface (see `hub.peer`), so every
rule here can be tested without a network.
"""
