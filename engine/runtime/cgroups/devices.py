"""Device access rules: OCI ``linux.resources.devices`` -> the v1 devices controller.

A rule list is applied in order to a model of the kernel's device cgroup: a default
(allow-all "blacklist" or deny-all "whitelist") plus exceptions keyed by exact
(type, major, minor). An ``a`` rule resets the model: allow -> allow-all with no
exceptions, deny -> deny-all with no exceptions. Other rules add permissions to or
remove them from the exception for that exact key, as the kernel does; removing
permissions from inside an existing wildcard exception ("punching a hole") cannot be
expressed to the kernel and is rejected, like runc does.

To apply a target model we read ``devices.list`` (the current model, whitelist form),
then write the fewest rules that reach the target: a reset when the default differs
(or the cgroup is allow-all), then removals, then additions. Resetting to deny-all
is avoided when the cgroup is already a whitelist, so updating a running container
never has a window where /dev/null is denied. After writing we read ``devices.list``
back and compare (exactly for a whitelist; only the mode for a blacklist, since the
kernel lists only "a *:* rwm" then).

``DEFAULT_ALLOWED_DEVICES`` is runc's list of rules appended to every container's
rules (mknod of any char/block device, /dev/null, zero, full, random, urandom, tty,
console, ptmx, pts, net/tun); the runtime appends it, this module does not.
"""

from __future__ import annotations

from engine.errors import EngineError, InvalidArgument

WILDCARD = -1
_PERM_ORDER = "rwm"

DEFAULT_ALLOWED_DEVICES: list[dict] = [
    {"allow": True, "type": "c", "access": "m"},
    {"allow": True, "type": "b", "access": "m"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},  # /dev/null
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},  # /dev/random
    {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "rwm"},  # /dev/full
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},  # /dev/tty
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},  # /dev/zero
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},  # /dev/urandom
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},  # /dev/pts/*
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},  # /dev/ptmx
    {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"},  # /dev/net/tun
]


def _norm_perms(perms: str) -> str:
    return "".join(p for p in _PERM_ORDER if p in perms)


class Rule:
    """One device rule; immutable and comparable."""

    __slots__ = ("allow", "type", "major", "minor", "access")

    def __init__(
        self, allow: bool, type: str, major: int = WILDCARD, minor: int = WILDCARD, access: str = "rwm"
    ) -> None:
        self.allow = allow
        self.type = type  # "a", "b" or "c"
        self.major = major
        self.minor = minor
        self.access = access

    def _key(self) -> tuple:
        return (self.allow, self.type, self.major, self.minor, self.access)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Rule) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"Rule{self._key()!r}"

    def cgroup_string(self) -> str:
        """The line written to devices.allow / devices.deny, e.g. "c 1:3 rwm"."""
        major = "*" if self.major == WILDCARD else str(self.major)
        minor = "*" if self.minor == WILDCARD else str(self.minor)
        return f"{self.type} {major}:{minor} {self.access}"


def parse_rules(items: object) -> list[Rule]:
    """Validate an OCI devices list into Rules (type defaults to "a", major/minor to *)."""
    if not isinstance(items, list):
        raise InvalidArgument("linux.resources.devices must be a list")
    rules: list[Rule] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidArgument(f"device rule {i} must be an object")
        allow = item.get("allow")
        if not isinstance(allow, bool):
            raise InvalidArgument(f"device rule {i}: allow must be a boolean")
        dtype = item.get("type") or "a"
        if dtype not in ("a", "b", "c"):
            raise InvalidArgument(f"device rule {i}: invalid cgroup device type {dtype!r}")
        nums = []
        for key in ("major", "minor"):
            v = item.get(key)
            if v is None:
                v = WILDCARD
            if not isinstance(v, int) or isinstance(v, bool) or v < WILDCARD:
                raise InvalidArgument(f"device rule {i}: invalid {key} {item.get(key)!r}")
            nums.append(v)
        access = item.get("access")
        if not access:
            # runc refuses an empty access string rather than guessing
            raise InvalidArgument(f"device access at {i} field cannot be empty")
        if not isinstance(access, str) or any(c not in _PERM_ORDER for c in access):
            raise InvalidArgument(f"device rule {i}: invalid access {access!r} (use r, w, m)")
        rules.append(Rule(allow, dtype, nums[0], nums[1], _norm_perms(access)))
    return rules


Key = tuple[str, int, int]


class DeviceModel:
    """The kernel's view: default policy plus exact-key exceptions."""

    def __init__(self, default_allow: bool = False) -> None:
        self.default_allow = default_allow
        self.exceptions: dict[Key, str] = {}

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, DeviceModel)
            and self.default_allow == other.default_allow
            and self.exceptions == other.exceptions
        )

    def __repr__(self) -> str:
        return f"DeviceModel(default_allow={self.default_allow}, exceptions={self.exceptions})"

    def _add(self, key: Key, perms: str) -> None:
        self.exceptions[key] = _norm_perms(self.exceptions.get(key, "") + perms)

    def _remove(self, key: Key, perms: str) -> None:
        dtype, major, minor = key
        for wider in ((dtype, WILDCARD, minor), (dtype, major, WILDCARD), (dtype, WILDCARD, WILDCARD)):
            if wider == key:
                continue
            have = self.exceptions.get(wider, "")
            if any(p in have for p in perms):
                raise InvalidArgument(
                    f"device rule {key} {perms} cannot be expressed in the v1 devices cgroup: "
                    f"it punches a hole in the wildcard rule {wider} {have}"
                )
        left = "".join(p for p in self.exceptions.get(key, "") if p not in perms)
        if left:
            self.exceptions[key] = left
        else:
            self.exceptions.pop(key, None)

    def apply(self, rule: Rule) -> None:
        if rule.type == "a":
            self.default_allow = rule.allow
            self.exceptions = {}
            return
        key = (rule.type, rule.major, rule.minor)
        # an exception means "the opposite of the default"
        if rule.allow == self.default_allow:
            self._remove(key, rule.access)
        else:
            self._add(key, rule.access)

    def transition_to(self, target: DeviceModel) -> list[Rule]:
        """The rules to write so that the kernel moves from this model to ``target``."""
        out: list[Rule] = []
        old = self.exceptions
        if self.default_allow or self.default_allow != target.default_allow:
            out.append(Rule(target.default_allow, "a", WILDCARD, WILDCARD, "rwm"))
            old = {}
        # exceptions carry permissions opposite to the target default
        for key in sorted(old, key=_sort_key):
            dropped = "".join(p for p in old[key] if p not in target.exceptions.get(key, ""))
            if dropped:
                out.append(Rule(target.default_allow, key[0], key[1], key[2], dropped))
        for key in sorted(target.exceptions, key=_sort_key):
            gained = "".join(p for p in target.exceptions[key] if p not in old.get(key, ""))
            if gained:
                out.append(Rule(not target.default_allow, key[0], key[1], key[2], gained))
        return out


def _sort_key(key: Key) -> tuple[int, int, str]:
    return (key[1], key[2], key[0])


def build_model(rules: list[Rule]) -> DeviceModel:
    """Apply rules in order, starting from deny-all (what an empty list means)."""
    model = DeviceModel(default_allow=False)
    for rule in rules:
        model.apply(rule)
    return model


def parse_list(text: str) -> DeviceModel:
    """devices.list contents -> model. "a *:* rwm" means allow-all."""
    model = DeviceModel(default_allow=False)
    for line in text.splitlines():
        fields = line.replace(":", " ").split()
        if not fields:
            continue
        if len(fields) != 4:
            raise EngineError(f"malformed devices.list line {line!r}")
        dtype, major, minor, perms = fields
        if dtype == "a":
            model = DeviceModel(default_allow=True)
            continue
        if dtype not in ("b", "c"):
            raise EngineError(f"unknown device type in devices.list line {line!r}")
        key = (dtype, WILDCARD if major == "*" else int(major), WILDCARD if minor == "*" else int(minor))
        model._add(key, perms)
    return model
