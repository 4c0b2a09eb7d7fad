"""One operation per (app, environment), enforced by the database, also across servers."""

from __future__ import annotations

import pytest

from conveyor.domain.operations import OperationKind, OperationState
from conveyor.errors import OperationInProgress
from conveyor.storage import operations
from conveyor.storage.database import open_engine


def test_a_second_operation_on_the_same_app_and_environment_is_refused(store):
    first = operations.start_operation(store.engine, OperationKind.DEPLOY, "hello", "dev", "ana")
    with pytest.raises(OperationInProgress) as caught:
        operations.start_operation(store.engine, OperationKind.ROLLBACK, "hello", "dev", "bob")
    message = str(caught.value)
    assert f"operation {first.id} (deploy by ana" in message
    assert "Wait for it to finish" in message
    # Other environments and apps are free.
    operations.start_operation(store.engine, OperationKind.DEPLOY, "hello", "test", "bob")
    operations.start_operation(store.engine, OperationKind.DEPLOY, "other", "dev", "bob")
    operations.finish_operation(store.engine, first.id, OperationState.SUCCEEDED, "live")
    again = operations.start_operation(store.engine, OperationKind.DEPLOY, "hello", "dev", "bob")
    assert again.state is OperationState.RUNNING


def test_two_servers_on_one_database_cannot_both_run_one(store, database_url):
    other_server = open_engine(database_url)
    try:
        operations.start_operation(store.engine, OperationKind.DEPLOY, "hello", "prod", "ana")
        with pytest.raises(OperationInProgress):
            operations.start_operation(other_server, OperationKind.DEPLOY, "hello", "prod", "bob")
    finally:
        other_server.dispose()


def test_log_lines_can_be_followed(store):
    operation = operations.start_operation(store.engine, OperationKind.DEPLOY, "a", "dev", "ana")
    operations.append_log(store.engine, operation.id, "building runtime")
    first = operations.log_lines(store.engine, operation.id)
    operations.append_log(store.engine, operation.id, "starting release 1")
    later = operations.log_lines(store.engine, operation.id, after=first[-1][0])
    assert [line for _, _, line in first] == ["building runtime"]
    assert [line for _, _, line in later] == ["starting release 1"]


def test_interrupt_running_on_server_start(store):
    operation = operations.start_operation(store.engine, OperationKind.DEPLOY, "a", "dev", "ana")
    interrupted = operations.interrupt_running(store.engine)
    assert [o.id for o in interrupted] == [operation.id]
    assert operations.get_operation(store.engine, operation.id).state is OperationState.INTERRUPTED
