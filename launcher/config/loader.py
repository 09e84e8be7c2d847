"""Strict YAML -> frozen dataclass loading.

Every mistake a user can make in a config file (a misspelt key, a wrong type, a missing
required value, a bad ``--set`` override) becomes a ``ConfigError`` that names the file,
the dotted key path and what is allowed, before any process is started.  Composition
happens in Python (dataclasses nest); there is no inheritance or interpolation.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from launcher.errors import JobError

T = TypeVar("T")


class ConfigError(JobError, ValueError):
    """A config file or override that does not match its schema."""


def read_yaml_mapping(path: str | Path) -> dict:
    """The top-level mapping of a YAML file, or a ``ConfigError`` naming the file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(raw).__name__}")
    return raw


def load_config(path: str | Path, schema: type[T], overrides: list[str] = ()) -> T:
    """Read ``path``, apply ``key.path=value`` overrides and build ``schema`` strictly."""
    raw = read_yaml_mapping(path)
    for item in overrides:
        apply_override(raw, item, schema, source=str(path))
    return build(schema, raw, source=str(path))


def apply_override(raw: dict, item: str, schema: type, source: str) -> None:
    """Apply one ``a.b.c=value`` override to the raw mapping; the value is parsed as YAML."""
    key_path, sep, value_text = item.partition("=")
    if not sep or not key_path:
        raise ConfigError(f"--set {item!r}: expected KEY.PATH=VALUE")
    keys = key_path.split(".")
    _check_path_exists(schema, keys, item, source, raw)
    node = raw
    for key in keys[:-1]:
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        node = child
    node[keys[-1]] = yaml.safe_load(value_text) if value_text else ""


def _check_path_exists(schema: type, keys: list[str], item: str, source: str, raw: Any) -> None:
    cls: Any = schema
    for depth, key in enumerate(keys):
        if not dataclasses.is_dataclass(cls):
            where = ".".join(keys[:depth])
            raise ConfigError(f"--set {item!r}: {where!r} is a value, not a section")
        hints = typing.get_type_hints(cls)
        if key not in hints:
            _unknown_key(".".join(keys[: depth + 1]), key, hints, f"--set for {source}")
        raw = raw.get(key) if isinstance(raw, dict) else None
        try:
            cls = _strip_optional(_field_type(cls, key, hints[key], raw, source))
        except ConfigError:  # ``task`` before its name is set: only its name, or the whole section
            declared = _strip_optional(hints[key])
            if depth < len(keys) - 1 and keys[depth + 1] not in typing.get_type_hints(declared):
                raise
            cls = declared


def _field_type(cls: type, name: str, declared: Any, raw: Any, source: str) -> Any:
    """A field's type; a field whose metadata has a ``schema`` resolver gets the class it names
    for the raw value (the job's ``task`` section: the named task's own config class)."""
    resolve = next(f.metadata.get("schema") for f in dataclasses.fields(cls) if f.name == name)
    return resolve(raw, source) if resolve else declared


def build(cls: type[T], raw: Any, source: str, key_path: str = "") -> T:
    """Build dataclass ``cls`` from a raw mapping, rejecting unknown keys and wrong types."""
    where = key_path or "<top level>"
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {where}: expected a mapping, got {_describe(raw)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in raw:
        if not isinstance(key, str):
            raise ConfigError(
                f"{source}: {where}: key {key!r} is not a name (YAML reads unquoted "
                "yes/no/on/off as booleans and digits as numbers: quote the key)"
            )
        if key not in fields:
            _unknown_key(_join(key_path, str(key)), str(key), fields, source)
    values = {}
    for name, field in fields.items():
        child_path = _join(key_path, name)
        if name in raw:
            values[name] = _convert(_field_type(cls, name, hints[name], raw[name], source), raw[name], source,
                                    child_path)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{source}: {child_path}: required key is missing")
    try:
        return cls(**values)
    except (ValueError, TypeError) as exc:  # __post_init__ validation
        raise ConfigError(f"{source}: {where}: {exc}") from None


def _convert(tp: Any, value: Any, source: str, key_path: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _convert(inner[0], value, source, key_path)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, source, key_path)
    if origin is typing.Literal:
        if value not in args:
            allowed = ", ".join(repr(a) for a in args)
            raise ConfigError(f"{source}: {key_path}: {value!r} is not one of {allowed}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {key_path}: expected a list, got {_describe(value)}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(
                    f"{source}: {key_path}: expected {len(args)} items, got {len(value)}"
                )
            pairs = enumerate(zip(args, value, strict=True))
            items = [_convert(a, v, source, f"{key_path}[{i}]") for i, (a, v) in pairs]
        else:
            item_type = args[0] if args else Any
            items = [_convert(item_type, v, source, f"{key_path}[{i}]") for i, v in enumerate(value)]
        return tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key_path}: expected a mapping, got {_describe(value)}")
        key_type, value_type = args or (Any, Any)
        return {
            _convert(key_type, k, source, key_path): _convert(value_type, v, source, f"{key_path}.{k}")
            for k, v in value.items()
        }
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        # PyYAML reads "1e-3" (no dot) as a string; accept what a person means by it.
        try:
            return float(value)
        except ValueError:
            pass
    if tp in (int, float, str, bool) and not _is_exactly(value, tp):
        raise ConfigError(f"{source}: {key_path}: expected {tp.__name__}, got {_describe(value)}")
    return value


def _is_exactly(value: Any, tp: type) -> bool:
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


def _strip_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(inner) == 1:
            return inner[0]
    return tp


def did_you_mean(word: str, choices: typing.Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice, or '' when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unknown_key(key_path: str, key: str, allowed: typing.Iterable[str], source: str) -> None:
    allowed = sorted(allowed)
    raise ConfigError(
        f"{source}: {key_path}: unknown key{did_you_mean(key, allowed)}; allowed keys here: {', '.join(allowed)}"
    )


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def to_dict(config: Any) -> Any:
    """Plain-YAML form of a config dataclass (tuples become lists)."""
    if dataclasses.is_dataclass(config):
        return {f.name: to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, (list, tuple)):
        return [to_dict(v) for v in config]
    if isinstance(config, dict):
        return {k: to_dict(v) for k, v in config.items()}
    return config


def config_yaml(config: Any) -> str:
    """The resolved config as YAML, so a run and each checkpoint say exactly what produced them."""
    return yaml.safe_dump(to_dict(config), sort_keys=False)
