"""The connection context: id generation, the isolation key, validation."""

from __future__ import annotations

import re
import threading

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.context import (
    MAX_ID_LENGTH,
    UnifiedIdGenerator,
    UserExecutionContext,
    validate_id,
)
from actors.errors import InvalidIdError, WsSupervisorError

THREAD_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

ID_FIELDS = ("user_id", "thread_id", "run_id", "request_id", "websocket_id")

VALID_IDS = {
    "user_id": "user-1",
    "thread_id": "thread_abc",
    "run_id": "run_abc",
    "request_id": "req_abc",
    "websocket_id": "ws_abc",
}

BAD_VALUES: list[tuple[str, object]] = [
    ("empty", ""),
    ("too long", "a" * (MAX_ID_LENGTH + 1)),
    ("colon", "abc:def"),
    ("leading colon", ":abc"),
    ("control character", "abc\x00def"),
    ("newline", "abc\n"),
    ("tab", "a\tb"),
    ("space", "abc def"),
    ("leading space", " abc"),
    ("trailing space", "abc "),
    ("cyrillic a", "p\u0430ypal"),
    ("accented letter", "caf\u00e9"),
    ("full-width digit", "\uff11abc"),
    ("leading dot", ".abc"),
    ("leading dash", "-abc"),
    ("slash", "a/b"),
    ("int", 42),
    ("none", None),
    ("bytes", b"abc"),
]


def make_context(**overrides: str) -> UserExecutionContext:
    ids = {**VALID_IDS, **overrides}
    return UserExecutionContext(
        user_id=ids["user_id"],
        thread_id=ids["thread_id"],
        run_id=ids["run_id"],
        request_id=ids["request_id"],
        websocket_id=ids["websocket_id"],
    )


# The seed's own unit tests, as its remediation plan writes them ("Testing Strategy").
# Only the factory is ours: the seed's WebSocketManagerFactory()._generate_isolation_key(context)
# is the context's own isolation_key here, the one place a key is built.


def create_test_context() -> UserExecutionContext:
    """The seed's helper: a new connection's context for its test user."""
    return UserExecutionContext.from_websocket_request("test-user")


def test_single_context_generation() -> None:
    """Verify SSOT context generation produces consistent IDs"""
    context = UserExecutionContext.from_websocket_request(
        user_id="test-user",
        *UnifiedIdGenerator.generate_user_context_ids("test-user", "websocket_session"),  # noqa: B026 - the seed's call, verbatim
    )
    # Verify thread_id and run_id consistency
    assert context.run_id in context.thread_id


def test_isolation_key_consistency() -> None:
    """Verify isolation keys match between creation and cleanup"""
    context = create_test_context()
    key1 = context.isolation_key
    key2 = context.isolation_key
    assert key1 == key2


# The seed's call: user_id by name, the generated ids after it


def test_the_seeds_call_builds_the_same_context_as_the_positional_form() -> None:
    ids = UnifiedIdGenerator.generate_user_context_ids("test-user", "websocket_session")
    seeds = UserExecutionContext.from_websocket_request(
        user_id="test-user",
        *ids,  # noqa: B026 - the seed's form
        websocket_id="ws_1",
        created_at=1.0,
    )
    positional = UserExecutionContext.from_websocket_request(
        "test-user", *ids, websocket_id="ws_1", created_at=1.0
    )
    assert seeds == positional
    assert (seeds.user_id, seeds.thread_id, seeds.run_id, seeds.request_id) == ("test-user", *ids)


def test_the_seeds_call_with_only_a_thread_id_resumes_that_thread() -> None:
    thread_id, _, _ = UnifiedIdGenerator.generate_user_context_ids("test-user", "websocket_session")
    context = UserExecutionContext.from_websocket_request(thread_id, user_id="test-user")
    assert (context.user_id, context.thread_id) == ("test-user", thread_id)
    assert context.run_id.startswith("run_websocket_")


def test_every_id_may_be_given_by_name() -> None:
    context = UserExecutionContext.from_websocket_request(
        user_id="u", thread_id="thread_t", run_id="run_r", request_id="req_q"
    )
    assert (context.user_id, context.thread_id, context.run_id, context.request_id) == (
        "u",
        "thread_t",
        "run_r",
        "req_q",
    )


def test_an_id_given_both_by_position_and_by_name_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="two values for thread_id"):
        UserExecutionContext.from_websocket_request("u", "thread_a", thread_id="thread_b")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="two values for thread_id"):
        UserExecutionContext.from_websocket_request("thread_a", user_id="u", thread_id="thread_b")  # type: ignore[call-overload]


def test_more_than_four_ids_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="at most 4 ids, got 5"):
        UserExecutionContext.from_websocket_request("u", "t", "r", "q", "x")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="at most 4 ids, got 5"):
        UserExecutionContext.from_websocket_request("t", "r", "q", "x", user_id="u")


def test_a_request_without_a_user_id_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="needs a user_id"):
        UserExecutionContext.from_websocket_request()  # type: ignore[call-overload]


def test_a_positional_user_id_that_is_not_a_string_is_an_invalid_id() -> None:
    with pytest.raises(InvalidIdError, match="user_id"):
        UserExecutionContext.from_websocket_request(None)  # type: ignore[call-overload]


# Single context generation


def test_a_generated_thread_id_contains_its_run_id() -> None:
    thread_id, run_id, request_id = UnifiedIdGenerator.generate_user_context_ids(
        "user-1", "websocket"
    )
    assert run_id in thread_id
    assert request_id not in (thread_id, run_id)


def test_a_context_without_a_thread_id_has_its_run_id_inside_its_thread_id() -> None:
    context = UserExecutionContext.from_websocket_request("user-1")
    assert context.run_id in context.thread_id


def test_generated_ids_are_unique_over_many_calls() -> None:
    seen: set[str] = set()
    calls = 5000
    for _ in range(calls):
        seen.update(UnifiedIdGenerator.generate_user_context_ids("user-1", "websocket"))
        seen.add(UnifiedIdGenerator.generate_websocket_id())
    assert len(seen) == 4 * calls


def test_generated_ids_are_unique_across_threads_calling_concurrently() -> None:
    threads_count, calls = 8, 2000
    results: list[list[str]] = [[] for _ in range(threads_count)]
    start = threading.Barrier(threads_count)

    def work(out: list[str]) -> None:
        start.wait()
        for _ in range(calls):
            out.extend(UnifiedIdGenerator.generate_user_context_ids("user-1", "websocket"))

    threads = [threading.Thread(target=work, args=(out,)) for out in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every_id = [one for out in results for one in out]
    assert len(every_id) == threads_count * calls * 3
    assert len(set(every_id)) == len(every_id)


def test_contexts_built_concurrently_have_distinct_ids() -> None:
    threads_count, calls = 8, 500
    results: list[list[UserExecutionContext]] = [[] for _ in range(threads_count)]
    start = threading.Barrier(threads_count)

    def work(out: list[UserExecutionContext]) -> None:
        start.wait()
        for _ in range(calls):
            out.append(UserExecutionContext.from_websocket_request("user-1"))

    threads = [threading.Thread(target=work, args=(out,)) for out in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    contexts = [context for out in results for context in out]
    for field in ("thread_id", "run_id", "request_id", "websocket_id"):
        values = {getattr(context, field) for context in contexts}
        assert len(values) == len(contexts), field


def test_generated_ids_are_valid_ids() -> None:
    thread_id, run_id, request_id = UnifiedIdGenerator.generate_user_context_ids(
        "user-1", "websocket"
    )
    for field, value in (
        ("thread_id", thread_id),
        ("run_id", run_id),
        ("request_id", request_id),
        ("websocket_id", UnifiedIdGenerator.generate_websocket_id()),
    ):
        assert validate_id(field, value) == value


def test_an_operation_with_bad_characters_is_refused() -> None:
    with pytest.raises(InvalidIdError) as raised:
        UnifiedIdGenerator.generate_user_context_ids("user-1", "Web:Socket")
    assert raised.value.field == "operation"


def test_id_generation_validates_the_user_id() -> None:
    with pytest.raises(InvalidIdError) as raised:
        UnifiedIdGenerator.generate_user_context_ids("user:1", "websocket")
    assert raised.value.field == "user_id"


# Isolation key consistency


def test_the_isolation_key_joins_user_id_and_thread_id() -> None:
    context = UserExecutionContext.from_websocket_request("user-1")
    assert context.isolation_key == f"{context.user_id}:{context.thread_id}"


def test_the_isolation_key_is_identical_across_repeated_reads() -> None:
    context = UserExecutionContext.from_websocket_request("user-1")
    keys = {context.isolation_key for _ in range(100)}
    assert keys == {f"user-1:{context.thread_id}"}


def test_two_contexts_with_the_same_user_and_thread_share_the_isolation_key() -> None:
    first = UserExecutionContext.from_websocket_request("user-1", "thread_abc")
    second = UserExecutionContext.from_websocket_request("user-1", "thread_abc")
    assert first.run_id != second.run_id
    assert first.isolation_key == second.isolation_key == "user-1:thread_abc"


def test_contexts_of_different_users_on_the_same_thread_have_different_keys() -> None:
    first = make_context(user_id="alice")
    second = make_context(user_id="bob")
    assert first.isolation_key != second.isolation_key


# from_websocket_request


def test_a_request_without_a_thread_id_starts_a_new_thread() -> None:
    context = UserExecutionContext.from_websocket_request("user-1")
    assert context.user_id == "user-1"
    assert context.thread_id.startswith("thread_")
    assert context.run_id in context.thread_id
    assert context.request_id
    assert context.websocket_id


def test_two_requests_without_a_thread_id_start_different_threads() -> None:
    first = UserExecutionContext.from_websocket_request("user-1")
    second = UserExecutionContext.from_websocket_request("user-1")
    assert first.thread_id != second.thread_id
    assert first.isolation_key != second.isolation_key


def test_a_request_with_a_thread_id_resumes_that_thread_with_fresh_ids() -> None:
    original = UserExecutionContext.from_websocket_request("user-1")
    resumed = UserExecutionContext.from_websocket_request("user-1", original.thread_id)
    assert resumed.thread_id == original.thread_id
    assert resumed.isolation_key == original.isolation_key
    assert resumed.run_id != original.run_id
    assert resumed.request_id != original.request_id
    assert resumed.websocket_id != original.websocket_id


def test_ids_given_to_a_request_are_kept() -> None:
    context = UserExecutionContext.from_websocket_request(
        "user-1",
        "thread_abc",
        "run_abc",
        "req_abc",
        websocket_id="ws_abc",
        created_at=12.5,
    )
    assert (context.thread_id, context.run_id, context.request_id) == (
        "thread_abc",
        "run_abc",
        "req_abc",
    )
    assert context.websocket_id == "ws_abc"
    assert context.created_at == 12.5


def test_a_request_uses_its_operation_in_generated_ids() -> None:
    context = UserExecutionContext.from_websocket_request("user-1", operation="chat")
    assert context.run_id.startswith("run_chat_")
    assert context.request_id.startswith("req_chat_")


def test_a_request_with_a_forged_thread_id_is_refused() -> None:
    with pytest.raises(InvalidIdError) as raised:
        UserExecutionContext.from_websocket_request("user-1", "other:thread")
    assert raised.value.field == "thread_id"


# Frozen


@pytest.mark.parametrize("field", [*ID_FIELDS, "created_at"])
def test_a_context_cannot_be_changed_after_it_is_built(field: str) -> None:
    context = make_context()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        setattr(context, field, "changed")
    assert context.isolation_key == "user-1:thread_abc"


# Validation


@pytest.mark.parametrize("field", ID_FIELDS)
@pytest.mark.parametrize(("case", "value"), BAD_VALUES, ids=[case for case, _ in BAD_VALUES])
def test_a_bad_id_is_refused_with_an_error_naming_the_field(
    field: str, case: str, value: object
) -> None:
    with pytest.raises(InvalidIdError) as raised:
        validate_id(field, value)
    assert raised.value.field == field
    assert field in str(raised.value)


@pytest.mark.parametrize("field", ID_FIELDS)
@pytest.mark.parametrize(("case", "value"), BAD_VALUES, ids=[case for case, _ in BAD_VALUES])
def test_a_context_with_a_bad_id_cannot_be_built(field: str, case: str, value: object) -> None:
    ids: dict[str, object] = {**VALID_IDS, field: value}
    with pytest.raises(InvalidIdError) as raised:
        UserExecutionContext(**ids)  # type: ignore[arg-type]
    assert raised.value.field == field
    assert field in str(raised.value)


def test_an_invalid_id_error_is_a_value_error_and_a_supervisor_error() -> None:
    with pytest.raises(ValueError, match="thread_id"):
        validate_id("thread_id", "")
    assert issubclass(InvalidIdError, WsSupervisorError)


def test_an_id_of_the_maximum_length_is_accepted() -> None:
    value = "a" * MAX_ID_LENGTH
    assert validate_id("thread_id", value) == value
    assert validate_id("user_id", value) == value


@pytest.mark.parametrize("value", ["a", "A9", "thread_abc-1.2", "0"])
def test_a_plain_ascii_thread_id_is_accepted(value: str) -> None:
    assert validate_id("thread_id", value) == value


@pytest.mark.parametrize("value", ["alice@example.com", "org|alice", "a+b", "u_1.x-y"])
def test_a_user_id_may_hold_email_like_characters(value: str) -> None:
    assert validate_id("user_id", value) == value


@pytest.mark.parametrize("value", ["alice@example.com", "org|alice", "a+b"])
def test_a_thread_id_may_not_hold_user_id_only_characters(value: str) -> None:
    with pytest.raises(InvalidIdError):
        validate_id("thread_id", value)


def test_a_colon_in_a_user_id_cannot_forge_another_users_key() -> None:
    with pytest.raises(InvalidIdError) as raised:
        make_context(user_id="alice:thread_abc", thread_id="x")
    assert raised.value.field == "user_id"


# Properties

# Tiny alphabets make near-collisions (and equal pairs) common; the wide ones cover the rest.
VALID_THREAD_IDS = st.from_regex(r"[ab][ab._-]{0,3}", fullmatch=True) | st.from_regex(
    r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True
)
VALID_USER_IDS = st.from_regex(r"[ab][ab.@|-]{0,3}", fullmatch=True) | st.from_regex(
    r"[A-Za-z0-9][A-Za-z0-9._@+|-]{0,20}", fullmatch=True
)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=140) | st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]*", fullmatch=True))
def test_validating_any_text_as_a_thread_id_accepts_it_or_raises_invalid_id(value: str) -> None:
    try:
        result = validate_id("thread_id", value)
    except InvalidIdError as error:
        assert error.field == "thread_id"
        assert (
            len(value) > MAX_ID_LENGTH or THREAD_ID_PATTERN.fullmatch(value) is None or value == ""
        )
    else:
        assert result == value
        assert THREAD_ID_PATTERN.fullmatch(value) is not None
        assert len(value) <= MAX_ID_LENGTH


@settings(max_examples=200, deadline=None)
@given(st.tuples(VALID_USER_IDS, VALID_THREAD_IDS), st.tuples(VALID_USER_IDS, VALID_THREAD_IDS))
def test_two_valid_id_pairs_share_an_isolation_key_only_when_they_are_equal(
    first: tuple[str, str], second: tuple[str, str]
) -> None:
    first_key = make_context(user_id=first[0], thread_id=first[1]).isolation_key
    second_key = make_context(user_id=second[0], thread_id=second[1]).isolation_key
    assert (first_key == second_key) == (first == second)


@settings(max_examples=100, deadline=None)
@given(VALID_USER_IDS, VALID_THREAD_IDS)
def test_an_isolation_key_splits_into_a_valid_pair_in_one_way_only(
    user_id: str, thread_id: str
) -> None:
    key = f"{user_id}:{thread_id}"
    for split in (index for index, char in enumerate(key) if char == ":"):
        other_user, other_thread = key[:split], key[split + 1 :]
        if (other_user, other_thread) == (user_id, thread_id):
            continue
        try:
            validate_id("user_id", other_user)
            validate_id("thread_id", other_thread)
        except InvalidIdError:
            continue
        pytest.fail(f"{other_user!r}:{other_thread!r} forges {key!r}")
