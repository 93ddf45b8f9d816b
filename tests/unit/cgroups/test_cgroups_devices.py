"""Device rules: OCI list -> kernel model -> devices.allow/deny lines."""

import pytest

from engine.errors import InvalidArgument
from engine.runtime.cgroups import devices as d

NULL = {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}


def test_rule_rendering():
    rules = d.parse_rules(
        [
            {"allow": False, "access": "rwm"},
            NULL,
            {"allow": True, "type": "c", "major": 136, "access": "wr"},
            {"allow": True, "type": "b", "access": "m"},
        ]
    )
    assert [r.cgroup_string() for r in rules] == ["a *:* rwm", "c 1:3 rwm", "c 136:* rw", "b *:* m"]
    assert [r.allow for r in rules] == [False, True, True, True]


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"allow": True, "type": "c", "major": 1, "minor": 3}, "device access at 0 field cannot be empty"),
        ({"allow": True, "type": "x", "access": "r"}, "invalid cgroup device type"),
        ({"allow": True, "type": "c", "access": "rx"}, "invalid access"),
        ({"allow": "yes", "access": "r"}, "allow must be a boolean"),
        ({"allow": True, "type": "c", "major": -2, "access": "r"}, "invalid major"),
        ({"allow": True, "type": "p", "access": "r"}, "invalid cgroup device type"),
    ],
)
def test_bad_rules_are_refused(item, message):
    with pytest.raises(InvalidArgument, match=message):
        d.parse_rules([item])


def test_build_model_default_deny_with_exceptions():
    model = d.build_model(d.parse_rules([{"allow": False, "access": "rwm"}, NULL]))
    assert not model.default_allow
    assert model.exceptions == {("c", 1, 3): "rwm"}


def test_deny_after_allow_removes_permissions_exactly():
    model = d.build_model(
        d.parse_rules([NULL, {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "w"}])
    )
    assert model.exceptions == {("c", 1, 3): "rm"}


def test_allow_all_then_deny_is_blacklist():
    model = d.build_model(
        d.parse_rules(
            [
                {"allow": True, "access": "rwm"},
                {"allow": False, "type": "b", "major": 8, "minor": 0, "access": "rw"},
            ]
        )
    )
    assert model.default_allow
    assert model.exceptions == {("b", 8, 0): "rw"}


def test_punching_hole_in_wildcard_is_refused():
    rules = d.parse_rules(
        [
            {"allow": True, "type": "c", "major": 136, "access": "rwm"},
            {"allow": False, "type": "c", "major": 136, "minor": 2, "access": "r"},
        ]
    )
    with pytest.raises(InvalidArgument, match="punches a hole"):
        d.build_model(rules)


def test_default_allowed_devices_parse_and_cover_dev_null():
    model = d.build_model(d.parse_rules(d.DEFAULT_ALLOWED_DEVICES))
    assert model.exceptions[("c", 1, 3)] == "rwm"
    assert model.exceptions[("c", 136, d.WILDCARD)] == "rwm"
    assert model.exceptions[("b", d.WILDCARD, d.WILDCARD)] == "m"


def test_parse_list_whitelist_and_blacklist():
    assert d.parse_list("a *:* rwm\n").default_allow
    model = d.parse_list("c 1:3 rwm\nc 136:* rw\nb *:* m\n")
    assert not model.default_allow
    assert model.exceptions == {("c", 1, 3): "rwm", ("c", 136, -1): "rw", ("b", -1, -1): "m"}
    assert d.parse_list("") == d.DeviceModel(default_allow=False)


def _lines(rules):
    return [("allow" if r.allow else "deny", r.cgroup_string()) for r in rules]


def test_transition_from_allow_all_resets_first():
    target = d.build_model(d.parse_rules([NULL]))
    steps = d.parse_list("a *:* rwm").transition_to(target)
    assert _lines(steps) == [("deny", "a *:* rwm"), ("allow", "c 1:3 rwm")]


def test_transition_between_whitelists_is_minimal_and_never_resets():
    current = d.parse_list("c 1:3 rwm\nc 1:5 rwm\n")
    target = d.build_model(
        d.parse_rules([NULL, {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "r"}])
    )
    steps = current.transition_to(target)
    assert _lines(steps) == [("deny", "c 1:5 rwm"), ("allow", "c 1:9 r")]


def test_transition_to_same_state_is_empty():
    current = d.parse_list("c 1:3 rwm\n")
    assert current.transition_to(d.build_model(d.parse_rules([NULL]))) == []


def test_transition_to_blacklist():
    target = d.build_model(
        d.parse_rules(
            [
                {"allow": True, "access": "rwm"},
                {"allow": False, "type": "b", "major": 8, "minor": 0, "access": "w"},
            ]
        )
    )
    steps = d.parse_list("c 1:3 rwm").transition_to(target)
    assert _lines(steps) == [("allow", "a *:* rwm"), ("deny", "b 8:0 w")]


def test_transition_partial_permission_change():
    current = d.parse_list("c 1:3 rwm\n")
    target = d.build_model(
        d.parse_rules([{"allow": True, "type": "c", "major": 1, "minor": 3, "access": "r"}])
    )
    assert _lines(current.transition_to(target)) == [("deny", "c 1:3 wm")]
