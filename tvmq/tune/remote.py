"""Measuring tuning candidates on boards registered with TVM's RPC tracker."""

from __future__ import annotations

from tvm.s_tir import meta_schedule as ms

from tvmq.errors import TvmqError
from tvmq.runtime.remote import parse_address


def rpc_runner(tracker: str, key: str | None, session_timeout_seconds: int = 60) -> ms.runner.RPCRunner:
    """A runner that asks the tracker at `tracker` (HOST:PORT) for a board registered as `key`,
    uploads each candidate there and times it."""
    if not key:
        raise TvmqError("--rpc-tracker needs --rpc-key: the key the boards registered with")
    host, port = parse_address(tracker, "RPC tracker")
    return ms.runner.RPCRunner(
        rpc_config=ms.runner.RPCConfig(
            tracker_host=host, tracker_port=port, tracker_key=key, session_timeout_sec=session_timeout_seconds
        ),
        evaluator_config=ms.runner.EvaluatorConfig(number=3, repeat=1, min_repeat_ms=50, enable_cpu_cache_flush=False),
        max_workers=1,
    )
