"""``drugrepo serve``'s options leave their defaults to `ServingSettings` (a flag not given lets DRUGREPO_* decide);
its help states them as text, since importing the settings (pydantic) would slow every ``drugrepo`` start."""

from __future__ import annotations

import argparse

from drugrepo_assets.api.settings import ServingSettings
from drugrepo_assets.cli import build_parser


def _serve_parser() -> argparse.ArgumentParser:
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return commands.choices["serve"]


def test_the_help_states_the_settings_defaults() -> None:
    parser = _serve_parser()
    helps = {action.dest: action.help or "" for action in parser._actions}
    defaults = {name: field.default for name, field in ServingSettings.model_fields.items()}
    assert helps["host"].endswith(f"(default {defaults['host']})")
    assert helps["port"].endswith(f"(default {defaults['port']})")
    assert helps["threads"].endswith(f"(default {defaults['torch_threads']})")
    assert f"@{defaults['model_alias']} of" in (parser.description or "")
    assert all(parser.get_default(name) is None for name in ("host", "port", "threads", "checkpoint", "model_uri"))
