import pytest

from revu._state import TRANSITIONS, State, Trigger, transition


def test_table_is_the_diagram():
    assert transition(State.STARTING, Trigger.RESTORED) is State.IDLE
    assert transition(State.IDLE, Trigger.SEND) is State.SENDING
    assert transition(State.SENDING, Trigger.ACK) is State.IDLE
    assert transition(State.SENDING, Trigger.TRANSIENT_FAILURE) is State.BACKING_OFF
    assert transition(State.SENDING, Trigger.PERMANENT_FAILURE) is State.IDLE
    for trigger in (Trigger.RETRY_DUE, Trigger.ONLINE, Trigger.MANUAL_FLUSH):
        assert transition(State.BACKING_OFF, trigger) is State.IDLE
    assert len(TRANSITIONS) == 8


@pytest.mark.parametrize(("state", "trigger"), [
    (State.IDLE, Trigger.ACK), (State.SENDING, Trigger.SEND), (State.BACKING_OFF, Trigger.SEND),
    (State.STARTING, Trigger.SEND), (State.IDLE, Trigger.RESTORED),
])
def test_illegal_pairs_raise(state, trigger):
    with pytest.raises(AssertionError, match="illegal transition"):
        transition(state, trigger)
