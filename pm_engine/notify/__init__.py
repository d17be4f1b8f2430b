"""Notifications: the adapter that tells the trader's phone (Apprise), and what it says.

This package imports only ``pm_engine.core`` (and Apprise): the outbox lives in the database
(``db/functions/75_notifications.sql``), the leader's delivery that drains it in ``pm_engine.ops.delivery``;
the catalogue of kinds is the core's (``pm_engine.core.replay.notification_kinds``, the twin of
``pm.notification_kinds``).
"""
