"""Helpers for the hostile-input, churn and Autobahn tests: a server
subprocess whose log is drained and scanned, and raw WebSocket clients that
can send anything a hostile peer would."""
