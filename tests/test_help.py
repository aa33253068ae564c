"""The command line explains itself: every option has help, every command ends with examples,
a command lists only the options it uses, and shells complete it."""
from __future__ import annotations

import json
import re
from collections.abc import Iterator

import click
import pytest
import yaml
from click.testing import CliRunner

from reconciler.cli import main
from reconciler.completion import COMPLETE_VAR, SHELLS


def commands(group: click.Group = main, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every command and subcommand below `group`, with the words that call it."""
    for name, command in sorted(group.commands.items()):
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))


ALL = sorted(commands(), key=lambda item: item[0])
IDS = [" ".join(path) for path, _ in ALL]


def test_the_walk_reaches_subcommands():
    assert {"keys create", "keys list", "keys revoke", "completion", "status"} <= set(IDS)


@pytest.mark.parametrize(("path", "command"), ALL, ids=IDS)
def test_every_option_has_help(path, command):
    context = click.Context(command, info_name=path[-1], parent=click.Context(main, info_name="reconcile"))
    missing = [param.opts[-1] for param in command.get_params(context) if isinstance(param, click.Option)
               and not re.sub(r"\[[^]]*\]", "", param.help or "").strip()]  # "[env: X]" alone says nothing
    assert missing == []


def test_the_root_options_have_help():
    context = click.Context(main, info_name="reconcile")
    assert all(p.help for p in main.get_params(context) if isinstance(p, click.Option))


@pytest.mark.parametrize(("path", "command"), ALL, ids=IDS)
def test_every_help_ends_with_examples(path, command):
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    head, _, examples = result.stdout.rstrip("\n").rpartition("\n  Examples:\n")
    lines = examples.splitlines()
    assert head and 1 <= len(lines) <= 2, result.stdout
    assert all(line.startswith("    ") and "reconcile " + path[0] in line for line in lines), lines


def options_of(*path: str) -> set[str]:
    return set(re.findall(r"^  (?:-\w, )?(--[\w-]+)", CliRunner().invoke(main, [*path, "--help"]).stdout, re.M))


def test_status_lists_only_connection_options():
    listed = options_of("status")
    assert {"--kubeconfig", "--context", "--in-cluster", "--qps", "--burst", "--database"} <= listed
    assert not listed & {"--force-conflicts", "--adopt", "--allow-empty", "--max-prune", "--create-namespaces",
                         "--concurrency", "--drift-policy"}
    assert {"--force-conflicts", "--adopt", "--allow-empty", "--max-prune"} <= options_of("apply") & options_of("diff")


def test_validate_lists_only_what_reading_specs_takes():
    listed = options_of("validate")
    assert {"--revision", "--work-tree", "--path", "--namespace", "--max-file-size", "--output"} <= listed
    assert not listed & {"--source-name", "--sandbox-api-version", "--database", "--kubeconfig"}
    assert {"--check-models", "--gateway-url", "--gateway-key-file"} <= listed & options_of("diff")
    assert {"--source-name", "--sandbox-api-version", "--gateway-url"} <= options_of("render")


@pytest.mark.parametrize("shell", SHELLS)
def test_completion_prints_the_shell_script(shell):
    result = CliRunner().invoke(main, ["completion", shell])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() and "reconcile" in result.stdout and COMPLETE_VAR in result.stdout


def test_the_completion_script_is_answered():
    # What the bash script asks when TAB is pressed after `reconcile sta` and `reconcile schema -o `.
    def complete(words: str, current: int) -> list[str]:
        env = {COMPLETE_VAR: "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(current)}
        return CliRunner().invoke(main, [], env=env, prog_name="reconcile").stdout.split()

    assert complete("reconcile sta", 1) == ["plain,status"]
    assert complete("reconcile schema -o ", 3) == ["plain,json", "plain,yaml"]
    assert CliRunner().invoke(main, ["completion", "powershell"]).exit_code == 2


def test_schema_as_json_or_yaml():
    as_json = CliRunner().invoke(main, ["schema"]).stdout
    assert json.loads(as_json) == json.loads(CliRunner().invoke(main, ["schema", "-o", "json"]).stdout)
    as_yaml = CliRunner().invoke(main, ["schema", "-o", "yaml"])
    assert as_yaml.exit_code == 0 and yaml.safe_load(as_yaml.stdout) == json.loads(as_json)
