"""Notifications: the adapter that tells the trader's phone (Apprise), and what it says.

This package imports only ``pm_engine.core`` (and Apprise): the outbox lives in the database
(``db/functions/75_notifications.sql``), the leader's job that drains it in ``pm_engine.ops.notifications``.
"""
