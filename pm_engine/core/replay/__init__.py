"""The Python twins of rules the database owns: what a replay (``pm-engine backtest``) runs without one.

Live, PostgreSQL is the authority on these rules (``db/functions/``); a backtest has no database, so each
rule is written a second time here, and only here, so the split is visible in the tree. Each module names
its SQL twin in its docstring, and a test feeds both the same cases (``tests/db/test_twins.py``,
``tests/db/test_constants.py``, plus the whole-stream replays in ``tests/integration/``):

- ``controls``: the trading mode, instrument locks and breakers (``62_controls.sql``: ``pm.control_blocks``);
- ``statistics``: trade figures, drawdowns, P&L by period, time-weighted return (``95_statistics.sql``);
- ``capital``: a deposit's or withdrawal's checks and moves (``64_capital.sql``: ``pm.record_capital_flow``);
- ``rollover``: the roll's accounting (``78_roll_accounting.sql``, ``79_roll_machine.sql``:
  ``pm.roll_close_layer_realized``, ``pm.roll_open``, ``pm.roll_move_layer``);
- ``notification_kinds``: the kinds and levels of ``pm.notification_kinds``;
- ``states``: the states of the order, roll and delivery machines.

A change to one side of a pair is a change to both; the tests say which side moved.
"""
