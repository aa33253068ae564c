"""The CONTAINER_ENV_ convention: CONTAINER_ENV_X in the reconciler's environment is X in every sandbox."""
from __future__ import annotations

from collections.abc import Mapping

from reconciler.errors import ConfigError
from reconciler.spec.rules import ENV_NAME, RESERVED_ENV

PREFIX = "CONTAINER_ENV_"


def container_env(environ: Mapping[str, str]) -> dict[str, str]:
    """Variables to pass into every sandbox, prefix stripped, sorted by name.

    Raises ConfigError naming every variable whose resulting name is invalid or reserved;
    values are never part of a message.
    """
    result: dict[str, str] = {}
    errors: list[str] = []
    for variable in sorted(environ):
        if not variable.startswith(PREFIX):
            continue
        name = variable[len(PREFIX):]
        if not ENV_NAME.match(name):
            errors.append(f"{variable}: {name!r} is not a valid variable name inside a sandbox "
                          "(use letters, digits and '_', not starting with a digit)")
        elif name in RESERVED_ENV:
            errors.append(f"{variable}: {name} is set by the reconciler in every sandbox (rename the variable)")
        else:
            result[name] = environ[variable]
    if errors:
        raise ConfigError("invalid CONTAINER_ENV_ variable(s) in the reconciler's environment:\n  "
                          + "\n  ".join(errors))
    return result
