"""Monitoring: request events and system samples in SQLite, rollups, alert rules and channels.

`Monitor` (monitor.py) wires the parts together; each part is usable on its own.
"""
