"""Tornado handlers: they adapt sockets and HTTP requests to the hub."""
