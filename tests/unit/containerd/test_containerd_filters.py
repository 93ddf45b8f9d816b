"""containerd's filter syntax: what parses, what it means, and what is rejected."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.api.containerd import filters
from engine.api.containerd.filters import ALWAYS, AllOf, AnyOf, Selector, mapping_adaptor, parse, parse_all
from engine.errors import EngineError, InvalidArgument

ENV = mapping_adaptor(
    {
        "namespace": "moby",
        "topic": "/tasks/exit",
        "event": {"container_id": "c1", "labels": {"a.b": "x", "k": "v"}},
        "empty": "",
    }
)


def matches(s: str, adaptor: filters.Adaptor = ENV) -> bool:
    return parse(s).match(adaptor)


def test_empty_matches_everything() -> None:
    assert parse("") is ALWAYS
    assert parse_all([]) is ALWAYS
    assert matches("")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('topic=="/tasks/exit"', Selector(("topic",), "==", "/tasks/exit")),
        ("namespace==moby", Selector(("namespace",), "==", "moby")),
        ("namespace!=moby", Selector(("namespace",), "!=", "moby")),
        ("labels", Selector(("labels",), "?")),
        ('labels."a.b"==x', Selector(("labels", "a.b"), "==", "x")),
        ("event.container_id==c1", Selector(("event", "container_id"), "==", "c1")),
        ("a == b", Selector(("a",), "==", "b")),
        ('a=="x\\ty\\u00e9\\""', Selector(("a",), "==", 'x\tyé"')),
        ("a==b.c:d/e", Selector(("a",), "==", "b.c:d/e")),
    ],
)
def test_parse_shapes(text: str, expected: Selector) -> None:
    assert parse(text) == expected


def test_comma_is_and_list_is_or() -> None:
    f = parse("namespace==moby,topic~=exit")
    assert isinstance(f, AllOf) and len(f.filters) == 2
    g = parse_all(["namespace==other", "topic~=exit"])
    assert isinstance(g, AnyOf)
    assert g.match(ENV)
    assert not parse_all(["namespace==other", "topic~=create"]).match(ENV)
    assert not matches("namespace==moby,topic~=create")
    assert matches("namespace==moby,topic~=exit")


def test_regex_with_alternative_quotes() -> None:
    # /.../ and |...| quote a value only for ~=; the quotes are not part of the pattern
    assert parse("topic~=/tasks/").value == "tasks"
    assert parse("topic~=|^/tasks/|").value == "^/tasks/"
    assert matches("topic~=|^/tasks/|")
    assert not matches("topic~=|^/containers/|")
    assert matches("topic~=/tasks/")
    assert matches('topic~="^/tasks/e.it$"')


def test_match_semantics() -> None:
    assert matches("namespace==moby")
    assert not matches("namespace==mob")  # equality is whole-string
    assert matches("namespace~=mob")  # regex is a search
    assert matches('event.labels."a.b"==x')
    assert matches("event.labels.k==v")
    assert not matches("event.labels.missing==v")
    assert matches("event.labels")  # presence
    assert not matches("nothere")
    assert matches("nothere!=x")  # absent compares as the empty string, as in containerd
    assert not matches('nothere==""')  # == needs the field present


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("topic==/tasks/exit", "invalid quote encountered"),  # / quotes need ~=
        ("a=b", 'unsupported operator "="'),
        ("a===b", 'unsupported operator "==="'),
        ("a==", "expected value or quoted"),
        ("==b", "expected field or quoted"),
        ('a=="open', "quoted literal not terminated"),
        ("a==b ", "unexpected input"),  # containerd rejects a trailing space too
        ("a==b,", "expected field or quoted"),
        ("a..b", "expected field or quoted"),
        ("a==b c", "unexpected input"),
        ('a=="\\q"', "unquoting failed"),
        ("a\x00==b", "unexpected null"),
        ("|x|==y", "invalid quote encountered"),  # fields take "..." only
    ],
)
def test_parse_errors(text: str, reason: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        parse(text)
    msg = str(exc.value)
    assert msg.startswith("filters: parse error: [")
    assert reason in msg


def test_error_points_at_the_offending_character() -> None:
    with pytest.raises(InvalidArgument, match=r"\[a >\|=\|< b\]"):
        parse("a=b")


def test_bad_regex_is_invalid_argument() -> None:
    with pytest.raises(InvalidArgument, match="invalid regular expression"):
        parse('a~="("')


def test_parse_all_reports_the_bad_one() -> None:
    with pytest.raises(InvalidArgument):
        parse_all(["namespace==moby", "topic=="])


@given(st.text(max_size=40))
def test_any_input_parses_or_is_invalid_argument(text: str) -> None:
    try:
        f = parse(text)
    except InvalidArgument:
        return
    except EngineError as err:  # pragma: no cover - would be a bug
        raise AssertionError(f"{text!r}: wrong error class {type(err).__name__}") from err
    f.match(ENV)  # and whatever parsed can be evaluated


@given(
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20),
)
def test_quoted_values_round_trip(field: str, value: str) -> None:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    f = parse(f'{field}=="{escaped}"')
    assert f == Selector((field,), "==", value)
    assert f.match(mapping_adaptor({field: value}))


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        # dockerd's libcontainerd subscription
        ("namespace==moby,topic~=|^/tasks/|", {"namespace": "moby", "topic": "/tasks/exit"}, True),
        ("namespace==moby,topic~=|^/tasks/|", {"namespace": "moby", "topic": "/containers/create"}, False),
        ("namespace==moby,topic~=|^/tasks/|", {"namespace": "k8s.io", "topic": "/tasks/exit"}, False),
        # the CRI plugin's and ctr users' usual forms
        ('topic=="/tasks/oom"', {"topic": "/tasks/oom"}, True),
        ('topic~="/images/"', {"topic": "/images/create"}, True),
    ],
)
def test_filters_real_clients_send(text: str, env: dict[str, object], expected: bool) -> None:
    assert parse(text).match(mapping_adaptor(env)) is expected
