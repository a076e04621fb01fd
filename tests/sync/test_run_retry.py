"""A run that hits an unexpected error that may pass (a tokenizer or database hiccup) is
retried from its checkpoint under the retry policy, not ended as ``internal_error`` at
once; an error that means the code is wrong ends the run after one attempt."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest

from contextd.connectors import registry
from contextd.connectors.base import ConnectorConfig
from contextd.core.types import Batch, SourceRecord
from contextd.runtime import Runtime

FAILURES: list[BaseException] = []  # raised one per pull, in order, before any record


class FlakyConfig(ConnectorConfig):
    label: str = "flaky"


class FlakyConnector:
    """Two batches of one record each; a pull first raises what ``FAILURES`` holds."""

    kind: ClassVar[str] = "test_flaky"
    Config: ClassVar[type[FlakyConfig]] = FlakyConfig

    def __init__(self, name: str, config: FlakyConfig) -> None:
        self.name = name

    def check(self) -> None:
        return None

    def pull(self, cursor: Mapping[str, Any] | None) -> Iterator[Batch]:
        if FAILURES:
            raise FAILURES.pop(0)
        for n in range(2):
            yield Batch(records=[SourceRecord(
                source=self.name, source_id=f"r{n}", kind="document", title=f"R{n}",
                text=f"Record {n} of the flaky source about canteen opening hours.",
                updated_at=datetime(2026, 11, 1, tzinfo=UTC), acl=("public",))],
                cursor={"n": n + 1})

    def list_ids(self) -> set[str]:
        return {"r0", "r1"}


@pytest.fixture
def rt(make_runtime: Callable[..., Runtime], monkeypatch: pytest.MonkeyPatch) -> Runtime:
    monkeypatch.setitem(registry.CONNECTORS, FlakyConnector.kind, FlakyConnector)
    FAILURES.clear()
    return make_runtime(sync_retry_attempts=3, sync_retry_initial_seconds=0.01,
                        sync_retry_max_seconds=0.05)


def test_a_transient_looking_internal_error_is_retried(rt: Runtime) -> None:
    row = rt.connectors.create(name="flaky", kind="test_flaky", config={})
    FAILURES.extend([ValueError("Unable to create tensor, you should probably activate "
                                "truncation and/or padding"), RuntimeError("Already borrowed")])
    run = rt.connectors.run_blocking(row.id)
    assert run.status == "success" and run.attempts == 3 and run.chunks_embedded == 2
    assert FAILURES == []


def test_retries_are_bounded_and_a_bug_is_not_retried(rt: Runtime) -> None:
    row = rt.connectors.create(name="flaky", kind="test_flaky", config={})
    FAILURES.extend([RuntimeError("still racing")] * 3)
    run = rt.connectors.run_blocking(row.id)
    assert run.status == "failed" and run.error_code == "internal_error"
    assert run.attempts == 3 and run.error is not None
    assert run.error.startswith("gave up after 3 attempts: RuntimeError")
    FAILURES[:] = [TypeError("unsupported operand")]
    bug = rt.connectors.run_blocking(row.id)
    assert bug.status == "failed" and bug.attempts == 1
    assert bug.error == "TypeError: unsupported operand"
