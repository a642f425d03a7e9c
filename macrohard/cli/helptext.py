"""How `--help` reads: plain text as written, names a user types, no Python types.

Typer shows a parameter's Python type (`<bool>`, `<list[str]>`, `<int range> [x>=1]`)
and writes a required argument as `{spec}`. Every valued option here names its value
(`--max-parallel N`), no option declares a range (commands check their values and
say so in words), and this command class drops the rest: braces in the usage line
and the type after an argument's name.
"""

from __future__ import annotations

import re
from typing import Any

from typer.core import TyperCommand

_BRACED = re.compile(r"^\{(.+)\}(\.\.\.)?$")  # `{SPEC}...`: an argument that takes many
_TYPE = re.compile(r"\s+<[^>]*>$")


class Command(TyperCommand):
    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return [_BRACED.sub(r"\1\2", piece) for piece in super().collect_usage_pieces(ctx)]

    def format_options(self, ctx: Any, formatter: Any) -> None:
        arguments: list[tuple[str, str]] = []
        options: list[tuple[str, str]] = []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            name, text = record
            if param.param_type_name == "argument":
                arguments.append((_TYPE.sub("", name), text))
            else:
                options.append((name, text))
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)
