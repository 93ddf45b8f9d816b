"""Container names: Docker's validity rule and generated ``adjective_surname`` names.

The word lists are our own (adjectives of temperament; surnames of people who shaped computing and the
sciences). As in dockerd, a generated name that is taken is retried, and after a few tries a random
digit is appended. A user's name must match ``[a-zA-Z0-9][a-zA-Z0-9_.-]+`` (Docker's message).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from engine.errors import InvalidArgument

VALID = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")

ADJECTIVES = (
    "agile", "amiable", "ardent", "austere", "bashful", "blissful", "bold", "brave", "breezy", "bright", "calm",
    "candid", "careful", "cheerful", "clever", "cosmic", "crisp", "curious", "daring", "dazzling", "devoted",
    "diligent", "dreamy", "eager", "earnest", "elated", "elegant", "fearless", "fervent", "festive", "fond",
    "frank", "gallant", "gentle", "gifted", "glad", "gleaming", "graceful", "hardy", "hearty", "honest",
    "humble", "jolly", "jovial", "keen", "kind", "lively", "loyal", "lucid", "merry", "mellow", "modest",
    "nimble", "noble", "patient", "placid", "plucky", "polite", "proud", "quiet", "radiant", "serene",
    "sincere", "snappy", "spirited", "steady", "stoic", "sunny", "swift", "tender", "thrifty", "tranquil",
    "upbeat", "valiant", "vibrant", "vigilant", "warm", "whimsical", "witty", "zealous", "zesty",
)

SURNAMES = (
    "agnesi", "babbage", "backus", "bartik", "bernoulli", "boole", "cantor", "cerf", "church", "codd",
    "conway", "corbato", "curie", "dijkstra", "engelbart", "erdos", "euler", "faraday", "fermat", "feynman",
    "fibonacci", "galois", "gauss", "goldberg", "hamilton", "hamming", "hilbert", "hollerith", "hopper",
    "huffman", "jacobi", "johnson", "kahan", "kay", "kepler", "kilby", "knuth", "kowalevski", "lamarr",
    "lamport", "laplace", "leibniz", "liskov", "lovelace", "mccarthy", "meitner", "minsky", "napier",
    "neumann", "newton", "noether", "noyce", "pascal", "perlman", "planck", "poincare", "ramanujan",
    "ritchie", "rivest", "shamir", "shannon", "somerville", "stallman", "sutherland", "tesla", "thompson",
    "torvalds", "turing", "wiles", "wirth", "wozniak", "yalow", "yonath", "zuse",
)


def validate(name: str) -> str:
    """A user-given name, normalised to "/name"; Docker's 400 when it is not valid."""
    if not VALID.match(name):
        raise InvalidArgument(f"Invalid container name ({name.lstrip('/') if name != '/' else name}), "
                              "only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    return name if name.startswith("/") else "/" + name


def generate(taken: Callable[[str], bool], rng: random.Random | None = None) -> str:
    """A free generated name ("/adjective_surname", a digit added after a few collisions)."""
    r = rng or random.SystemRandom()
    for attempt in range(64):
        name = f"/{r.choice(ADJECTIVES)}_{r.choice(SURNAMES)}"
        if attempt >= 3:
            name += str(r.randint(0, 9 if attempt < 16 else 9999))
        if not taken(name):
            return name
    raise InvalidArgument("could not generate a free container name")
