"""Every error this project raises, under one base.

    AftersaleError
    ├── ConfigError              bad settings, policy file or command-line value (retriable=False)
    │   └── PolicyError          the policy file is unreadable or says something invalid
    ├── ContractError            the shipped schemas, or stored state bytes, cannot be read
    ├── DependencyError          an installed library is not the version the worker's patches fit
    └── InputError               a record that cannot be applied: one subclass per dead-letter code
        ├── MalformedJson        `malformed_json`
        ├── SchemaViolation      `schema_violation`
        ├── UnknownType          `unknown_type`
        ├── UnknownCase          `unknown_case`
        ├── CaseAlreadyOpen      `case_already_open`
        ├── NotEligible          `not_eligible`
        ├── InvalidTransition    `invalid_transition`
        └── CaseLimitReached     `case_limit_reached`

`InputError.code` is the dead-letter code of the contract, one class per code, so callers
decide by type and never by message text. None of them is retriable: the same record gives
the same answer.
"""

from __future__ import annotations

from typing import ClassVar, Final

#: How much of a value an error's detail quotes (a dead letter must stay small).
SHOWN_CHARS: Final = 80


def shown(value: object) -> str:
    """`repr(value)`, cut to SHOWN_CHARS characters: a detail quotes input, never all of it."""
    text = repr(value)
    if len(text) <= SHOWN_CHARS:
        return text
    return f"{text[:SHOWN_CHARS]}... ({len(text)} characters)"


class AftersaleError(Exception):
    """Base of every error raised by this project."""

    retriable: ClassVar[bool] = False


class ConfigError(AftersaleError):
    """A setting, a policy file or a command-line value is invalid."""


class PolicyError(ConfigError):
    """The policy file cannot be read or contains an invalid value."""


class ContractError(AftersaleError):
    """The contract under topics/, or bytes this project wrote (stored state), cannot be read."""


class ShardError(AftersaleError):
    """A process of a sharded replay (`aftersale replay --jobs`) ended without its answer."""


class DependencyError(AftersaleError):
    """faust-streaming or aiokafka is not the version the worker's framework patches fit."""


class InputError(AftersaleError):
    """A record that cannot be applied; `code` is its dead-letter code."""

    code: ClassVar[str] = "input_error"

    @property
    def detail(self) -> str:
        return str(self.args[0]) if self.args else self.code


class MalformedJson(InputError):
    code = "malformed_json"


class SchemaViolation(InputError):
    code = "schema_violation"


class UnknownType(InputError):
    code = "unknown_type"


class UnknownCase(InputError):
    code = "unknown_case"


class CaseAlreadyOpen(InputError):
    code = "case_already_open"


class NotEligible(InputError):
    code = "not_eligible"


class InvalidTransition(InputError):
    code = "invalid_transition"


class CaseLimitReached(InputError):
    """A request on an order that has had the policy's `max_cases_per_order` cases already."""

    code = "case_limit_reached"


DEAD_LETTER_CODES: tuple[str, ...] = tuple(
    cls.code
    for cls in (
        MalformedJson,
        SchemaViolation,
        UnknownType,
        UnknownCase,
        CaseAlreadyOpen,
        NotEligible,
        InvalidTransition,
        CaseLimitReached,
    )
)
