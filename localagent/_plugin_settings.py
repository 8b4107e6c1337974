"""Typed plugin settings: a ``[plugins.NAME]`` table turned into the type its plugin declares.

A plugin declares its settings as a frozen attrs class (or a msgspec
``Struct``, or a dataclass) and asks for them in ``on_load`` with
``agent.plugin_settings(NAME, ItsSettings)``. :func:`convert_plugin_table`
does the work with ``msgspec.convert``: the table's TOML values are checked
against the annotations (strictly: ``"10"`` is not an integer, ``true`` is not
a number), then the type's own validators run. Every error names the key, what
was expected, and where the value came from: the config file, or a ``--set``
override.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, TypeVar

from .exceptions import ConfigError

__all__ = ["convert_plugin_table", "settings_fields"]

SettingsT = TypeVar("SettingsT")

#: The end of a msgspec error that says where it happened: `` - at `$.key[0]` ``.
_AT = re.compile(r" - at `\$\.(\w+)(.*)`$")
#: msgspec's error for a field without a default that the table lacks.
_MISSING = re.compile(r"^Object missing required field `(\w+)`")


def settings_fields(settings_type: type[Any]) -> dict[str, Any]:
    """The keys a settings type accepts, in declaration order, with their
    ``msgspec.inspect`` types.

    Raises:
        TypeError: ``settings_type`` is not an attrs class, a dataclass or a
            msgspec ``Struct`` (a mistake in the plugin, not in the config).
    """
    import msgspec.inspect

    info = msgspec.inspect.type_info(settings_type)
    if not isinstance(info, msgspec.inspect.StructType | msgspec.inspect.DataclassType):
        raise TypeError(
            "plugin settings must be an attrs class, a dataclass or a msgspec Struct, "
            f"not {settings_type!r}"
        )
    return {field.encode_name: field.type for field in info.fields}


def _choices(field_type: Any) -> str | None:
    """``"a", "b"`` for a ``Literal`` field (msgspec's own error lists no values)."""
    import msgspec.inspect

    if isinstance(field_type, msgspec.inspect.LiteralType):
        return ", ".join(repr(value) for value in field_type.values)
    return None


def _decode_path(wanted: type[Any], value: Any) -> Any:
    """msgspec's hook for types it does not know: paths, from non-empty strings."""
    if isinstance(wanted, type) and issubclass(wanted, Path):
        if isinstance(value, str) and value:
            return wanted(value).expanduser()
        raise TypeError(f"expected a path (a non-empty string), got {value!r}")
    raise NotImplementedError(f"{wanted!r} cannot be read from TOML")


def _in_toml_terms(problem: str) -> str:
    """msgspec speaks JSON (`` `object` ``, `` | null``); say it the way TOML does."""
    problem = problem.replace("`object`", "table").replace(" | null`", "").replace("`", "")
    return problem[:1].lower() + problem[1:] if problem[:1].isupper() else problem


def convert_plugin_table(
    name: str,
    table: Mapping[str, Any],
    settings_type: type[SettingsT],
    *,
    file: Path,
    overridden: Collection[str] = (),
) -> SettingsT:
    """Validate a plugin's table and return it as an instance of ``settings_type``.

    Args:
        name: The plugin's name (its ``[plugins.NAME]`` table).
        table: The table without ``enabled``, overrides applied.
        settings_type: An attrs class, a dataclass or a msgspec ``Struct``;
            missing keys take its defaults. Besides what msgspec converts,
            a :class:`~pathlib.Path` field takes a string (``~`` expanded).
        file: The config file, named in errors.
        overridden: The ``NAME.KEY`` names whose values came from ``--set``
            (or another override) rather than the file.

    Raises:
        ConfigError: An unknown key (the message lists the known ones), a value
            of the wrong type or out of range; the message names the key, what
            it expected and where the value came from.
        TypeError: ``settings_type`` is not a settings type.
    """
    import msgspec

    fields = settings_fields(settings_type)

    def where(key: str) -> str:
        if f"{name}.{key}" in overridden:
            return f"--set {name}.{key}"
        return f"{file}: plugins.{name}.{key}"

    unknown = [key for key in table if key not in fields]
    if unknown:
        known = ", ".join(fields) if fields else f"none: plugin {name!r} has no settings"
        raise ConfigError(
            f"{'; '.join(where(key) for key in unknown)}: "
            f"unknown setting{'s' if len(unknown) > 1 else ''} (known: {known})"
        )

    def convert(values: Mapping[str, Any]) -> SettingsT:
        return msgspec.convert(dict(values), settings_type, dec_hook=_decode_path)

    try:
        return convert(table)
    except msgspec.ValidationError as exc:
        error = exc
    missing = _MISSING.match(str(error))
    if missing is not None:
        raise ConfigError(f"{file}: [plugins.{name}]: {missing[1]} is required") from None
    at = _AT.search(str(error))
    if at is not None:  # a type or constraint msgspec checked: it says which key
        key, inside = at[1], at[2]
        problem = str(error)[: at.start()]
        if problem.startswith("Invalid enum value") and (choices := _choices(fields[key])):
            problem = f"expected one of {choices}"
        raise ConfigError(
            f"{where(key)}{inside} = {table[key]!r}: {_in_toml_terms(problem)}"
        ) from None
    # A validator of the type said no, in its own words: the key to blame is one whose
    # value alone (the others at their defaults) fails the same way.
    problem = str(error)
    for key, value in table.items():
        try:
            convert({key: value})
        except msgspec.ValidationError as alone:
            if str(alone) == problem:
                raise ConfigError(f"{where(key)} = {value!r}: {problem}") from None
    # The values are fine one by one, not together (e.g. a minimum above a maximum).
    sets = [f"--set {name}.{key}" for key in table if f"{name}.{key}" in overridden]
    with_sets = f" (with {', '.join(sets)})" if sets else ""
    raise ConfigError(f"{file}: [plugins.{name}]{with_sets}: {problem}") from None
