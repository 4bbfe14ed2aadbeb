"""Tune: MetaSchedule autotuning per target, with tuning logs kept in tuning_logs/<target>/.

Work in progress (see the issue): the log format (log.py) and the builder that works on these
machines (builder.py) are in place; task extraction, the tuning loop, applying logs at compile
time and RPC measurement are next.
"""
