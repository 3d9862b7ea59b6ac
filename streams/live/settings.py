"""Worker settings: one place, each with its environment variable, default and meaning.

`Settings.from_env()` reads `AFTERSALE_*` variables and refuses bad values with a message
that names the variable. The README's configuration table is checked against these fields.
"""

from __future__ import annotations

import ipaddress
import math
import os
import socket
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

from streams.contract.topics import (
    ACTIONS,
    AFTERSALE_EVENTS,
    DEADLETTER,
    NOTIFICATIONS,
    ORDER_EVENTS,
)
from streams.errors import ConfigError
from streams.rules import presets

PREFIX: Final = "AFTERSALE_"


class _Checked(Protocol):
    def check(self) -> None: ...


S = TypeVar("S", bound=_Checked)


class _Wrapper(Protocol):
    """A setting value that wraps its text (`Secret`, the read side's `RedisUrl`)."""

    @property
    def value(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Secret:
    """A value that never prints."""

    value: str

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return text

    return parse


def _port(text: str) -> int:
    port = int(text)
    if not 0 < port < 65536:
        raise ValueError("must be a TCP port (1-65535)")
    return port


def _address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError("must be an IP address (e.g. 127.0.0.1, 0.0.0.0 or ::)") from None


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be a whole number >= 1")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise ValueError("must be a positive number of seconds")
    return value


def _text(text: str) -> str:
    return text


def _boolean(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise ValueError("must be true or false")


def _session_seconds(text: str) -> float:
    value = _seconds(text)
    if not 6 <= value <= 1800:  # the broker's group.min/max.session.timeout.ms defaults
        raise ValueError("must be between 6 and 1800 seconds (the broker's bounds)")
    return value


def _preset(text: str) -> str | None:
    if not text:
        return None
    if text not in presets.NAMES:
        raise ValueError(f"must be one of {', '.join(presets.NAMES)}")
    return text


def _optional_path(text: str) -> Path | None:
    return Path(text) if text else None


def _setting(default: Any, doc: str, parse: Callable[[str], Any]) -> Any:
    """A settings field: its default, a one-line doc and the parser of its env value."""
    return field(default=default, metadata={"doc": doc, "parse": parse})


@dataclass(frozen=True, slots=True)
class Settings:
    """The worker's settings; build with `Settings.from_env()`."""

    kafka_bootstrap: str = _setting(
        "127.0.0.1:9092", "Kafka bootstrap servers, comma-separated", _text
    )
    kafka_security_protocol: str = _setting(
        "PLAINTEXT",
        "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
        _choice("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
    )
    kafka_sasl_mechanism: str = _setting(
        "",
        "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (with a SASL protocol)",
        _choice("", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"),
    )
    kafka_sasl_username: str = _setting("", "SASL user name", _text)
    kafka_sasl_password: Secret = _setting(
        Secret(""), "SASL password (secret: never printed)", Secret
    )
    kafka_ssl_cafile: Path | None = _setting(
        None, "CA bundle for SSL (default: the system's)", _optional_path
    )
    app_id: str = _setting(
        "aftersale-deadlines", "faust app id: consumer group and internal topic prefix", _text
    )
    topic_prefix: str = _setting(
        "", "prefix of the contract's topic names (isolated environments)", _text
    )
    partitions: int = _setting(12, "partitions of the input, state and tick topics", _positive_int)
    store: str = _setting(
        "rocksdb",
        "state store: rocksdb (local, persistent) or memory",
        _choice("rocksdb", "memory"),
    )
    data_dir: Path = _setting(Path(".aftersale-data"), "folder of the local state store", Path)
    policy_file: Path | None = _setting(
        None, "policy YAML (default: the contract's policy)", _optional_path
    )
    policy_reload_interval: float = _setting(
        5.0,
        "seconds between checks of AFTERSALE_POLICY_FILE for a change, taken without a restart "
        "when it moves nothing running (a version that takes effect later, a freeze ahead)",
        _seconds,
    )
    policy: str | None = _setting(
        None,
        "a policy preset shipped with the package (`aftersale policy list`), instead of "
        "AFTERSALE_POLICY_FILE",
        _preset,
    )
    web_port: int = _setting(6066, "port of faust's web server (its status pages)", _port)
    web_bind: str = _setting(
        "127.0.0.1",
        "address the web server listens on (0.0.0.0: every interface, e.g. in a pod)",
        _address,
    )
    processing_guarantee: str = _setting(
        "exactly_once",
        "exactly_once, or at_least_once: outputs outside transactions, so after a crash an "
        "action or reminder can appear twice",
        _choice("exactly_once", "at_least_once"),
    )
    tick_interval: float = _setting(0.2, "seconds between checks for due deadlines", _seconds)
    due_window: float = _setting(
        600.0,
        "seconds ahead of now for which due times are held in memory; the rest stay in the "
        "on-disk due index (RocksDB store) until they come within it",
        _seconds,
    )
    instance_id: str = _setting(
        "",
        "this worker's static group membership id (default: the host name, a StatefulSet pod's "
        "name); unique per worker: restarted with it, a worker gets its partitions back at once",
        _text,
    )
    session_timeout: float = _setting(
        10.0,
        "seconds without a heartbeat before a worker counts as dead and its partitions move "
        "(6 to 1800; a restart within it keeps them)",
        _session_seconds,
    )
    status_feed: bool = _setting(
        True,
        "write the read side's feed of order and case changes to <app id>-status, for "
        "`aftersale project` (false: no read side)",
        _boolean,
    )
    any_partitioner: bool = _setting(
        True,
        "deadlines also wait until every input partition has been read past them, since a "
        "producer that partitions otherwise may put an order's record on any partition "
        "(false when every producer uses murmur2: deadlines wait for their own partition only)",
        _boolean,
    )
    leave_on_shutdown: bool = _setting(
        True,
        "on SIGTERM, leave the group so other workers take the partitions at once (false: "
        "keep them for a restart within the session timeout, as in a rolling restart)",
        _boolean,
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read `AFTERSALE_*` variables (default: os.environ); `overrides` win over both."""
        return read_env(cls, env, overrides)

    def check(self) -> None:
        """Refuse combinations that cannot work."""
        sasl = self.kafka_security_protocol.startswith("SASL_")
        if sasl and not (self.kafka_sasl_mechanism and self.kafka_sasl_username):
            raise ConfigError(
                f"{PREFIX}KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                f"{PREFIX}KAFKA_SASL_MECHANISM and {PREFIX}KAFKA_SASL_USERNAME"
            )
        if self.kafka_sasl_mechanism and not sasl:
            raise ConfigError(
                f"{PREFIX}KAFKA_SASL_MECHANISM is set but {PREFIX}KAFKA_SECURITY_PROTOCOL is "
                f"{self.kafka_security_protocol}"
            )
        if self.policy_file is not None and self.policy is not None:
            raise ConfigError(
                f"{PREFIX}POLICY and {PREFIX}POLICY_FILE are both set: one policy, from one"
            )
        if self.policy_file is not None and not self.policy_file.is_file():
            raise ConfigError(f"{PREFIX}POLICY_FILE: no such file: {self.policy_file}")

    def client_options(self) -> dict[str, Any]:
        """Connection options for plain aiokafka clients (producers, admin, probes)."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.kafka_bootstrap,
            "security_protocol": self.kafka_security_protocol,
        }
        if self.kafka_security_protocol.endswith("SSL"):
            cafile = str(self.kafka_ssl_cafile) if self.kafka_ssl_cafile else None
            options["ssl_context"] = ssl.create_default_context(cafile=cafile)
        if self.kafka_sasl_mechanism:
            options.update(
                sasl_mechanism=self.kafka_sasl_mechanism,
                sasl_plain_username=self.kafka_sasl_username,
                sasl_plain_password=self.kafka_sasl_password.value,
            )
        return options

    def member_id(self) -> str:
        """This worker's static membership id: `instance_id`, else the host name."""
        return self.instance_id or socket.gethostname()

    def topic(self, name: str) -> str:
        """A contract topic's name in this environment."""
        return self.topic_prefix + name

    def topics(self) -> TopicNames:
        """Every topic name the worker uses in this environment."""
        prefix = self.topic_prefix
        return TopicNames(
            orders=prefix + ORDER_EVENTS,
            aftersales=prefix + AFTERSALE_EVENTS,
            actions=prefix + ACTIONS,
            notifications=prefix + NOTIFICATIONS,
            deadletter=prefix + DEADLETTER,
            ticks=f"{self.app_id}-ticks",
            reroute=f"{self.app_id}-reroute",
            status=f"{self.app_id}-status",
        )


@dataclass(frozen=True, slots=True)
class TopicNames:
    """The topics of one environment: the contract's (with the prefix) and the worker's own."""

    orders: str
    aftersales: str
    actions: str
    notifications: str
    deadletter: str
    #: Internal: tick records, co-partitioned with the inputs.
    ticks: str
    #: Internal: input records a producer put on another partition than their order's,
    #: rerouted to it (co-partitioned with the inputs).
    reroute: str
    #: Internal: the read side's feed of order and case changes (`streams/rules/status.py`).
    status: str

    @property
    def inputs(self) -> tuple[str, str]:
        """The two input topics, order-events first."""
        return self.orders, self.aftersales

    @property
    def merged(self) -> tuple[str, str, str]:
        """The topics whose records one partition judges, in append order: both inputs and
        the reroute topic (ranked so: order-events first at equal append times)."""
        return self.orders, self.aftersales, self.reroute

    def output(self, contract_name: str) -> str:
        """This environment's name of an output topic of the contract."""
        return {
            ACTIONS: self.actions,
            NOTIFICATIONS: self.notifications,
            DEADLETTER: self.deadletter,
        }[contract_name]

    def contract_name(self, topic: str) -> str:
        """The contract's name of one of this environment's input topics."""
        return {self.orders: ORDER_EVENTS, self.aftersales: AFTERSALE_EVENTS}[topic]


def read_env(
    cls: type[S],
    env: Mapping[str, str] | None,
    overrides: Mapping[str, Any],
    *,
    masked: tuple[type, ...] = (Secret,),
) -> S:
    """Settings of dataclass `cls` from `AFTERSALE_*` variables (default: os.environ), each
    parsed by its field's parser, `overrides` winning over both; then `check()`ed. A bad value
    is a ConfigError naming the variable (shown as **** when its default is of a `masked`
    type)."""
    source = os.environ if env is None else env
    values: dict[str, Any] = {}
    for spec in fields(cls):  # type: ignore[arg-type]
        env_name = PREFIX + spec.name.upper()
        raw = source.get(env_name)
        if raw is None:
            continue
        try:
            values[spec.name] = spec.metadata["parse"](raw.strip())
        except ValueError as exc:
            shown = "****" if isinstance(spec.default, masked) else repr(raw)
            raise ConfigError(f"{env_name}={shown}: {exc}") from None
    values.update(overrides)
    settings = cls(**values)
    settings.check()
    return settings


def markdown_table(cls: type = Settings, wrapped: tuple[type[_Wrapper], ...] = (Secret,)) -> str:
    """The README's configuration table of settings dataclass `cls` (the worker's by
    default); defaults of a `wrapped` type show their `.value`."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for spec in fields(cls):
        default: Any = spec.default
        if isinstance(default, wrapped):
            default = default.value
        if isinstance(default, bool):
            default = str(default).lower()
        shown = "" if default in ("", None) else f"`{default}`"
        rows.append(f"| `{PREFIX}{spec.name.upper()}` | {shown} | {spec.metadata['doc']} |")
    return "\n".join(rows)
