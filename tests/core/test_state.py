import pytest

from revu._state import TRANSITIONS, Isolation, Lane, State, Trigger, transition


def test_table_is_the_diagram():
    assert transition(State.STARTING, Trigger.RESTORED) is State.IDLE
    assert transition(State.IDLE, Trigger.FLUSH) is State.DRAINING
    assert transition(State.DRAINING, Trigger.SEND) is State.SENDING
    assert transition(State.DRAINING, Trigger.DRAINED) is State.IDLE
    assert transition(State.SENDING, Trigger.ACK) is State.DRAINING
    assert transition(State.SENDING, Trigger.TRANSIENT_FAILURE) is State.BACKING_OFF
    assert transition(State.SENDING, Trigger.PERMANENT_FAILURE) is State.DRAINING
    for trigger in (Trigger.RETRY_DUE, Trigger.ONLINE, Trigger.MANUAL_FLUSH):
        assert transition(State.BACKING_OFF, trigger) is State.DRAINING
    assert transition(State.SENDING, Trigger.RECOVER) is State.DRAINING
    assert transition(State.SENDING, Trigger.SKIPPED) is State.DRAINING
    assert len(TRANSITIONS) == 14


@pytest.mark.parametrize(("state", "trigger"), [
    (State.IDLE, Trigger.ACK), (State.SENDING, Trigger.SEND), (State.BACKING_OFF, Trigger.SEND),
    (State.STARTING, Trigger.SEND), (State.IDLE, Trigger.RESTORED), (State.IDLE, Trigger.DRAINED),
    (State.BACKING_OFF, Trigger.FLUSH),
])
def test_illegal_pairs_raise(state, trigger):
    with pytest.raises(AssertionError, match="illegal transition"):
        transition(state, trigger)


def test_mutation_lanes_never_drain():
    lane = Lane("m:chat")
    lane.flush()
    assert lane.state is State.IDLE and lane.free
    lane.fire(Trigger.SEND)
    lane.acked()
    assert lane.state is State.IDLE
    lane.fire(Trigger.SEND)
    lane.back_off(1000, 0)
    lane.resume(Trigger.RETRY_DUE)
    assert lane.state is State.IDLE and lane.retry_at_ms is None and lane.failures == 1


def test_events_lane_sends_only_while_draining():
    lane = Lane("events", events=True)
    assert not lane.free
    lane.flush()
    assert lane.free
    lane.drained()
    assert lane.state is State.IDLE


def test_recover_frees_a_lane_whose_request_vanished():
    lane = Lane("events", events=True, state=State.SENDING)
    assert lane.recover() and lane.state is State.DRAINING
    assert not lane.recover()


def test_isolation_halves_then_retries_the_rest_together():
    iso = Isolation()
    assert iso.batch_limit(50) == 50
    iso.refused([f"e{i}" for i in range(10)])
    assert iso.batch_limit(50) == 5
    iso.refused(["e0", "e1", "e2", "e3", "e4"])
    assert iso.batch_limit(50) == 2
    iso.forget(["e0"])
    iso.poison_found()
    assert iso.batch_limit(50) == 9
    iso.forget([f"e{i}" for i in range(10)])
    assert not iso.active and iso.batch_limit(50) == 50
