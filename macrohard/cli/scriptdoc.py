"""The reference page for model scripts (docs/script-format.md), generated from the code it describes.

Every tool's arguments come from the tool's own pydantic `Args`, each role's tools and
territory from the bundled role files, and the step keys from the script loader's
model, so the page cannot drift from what a run accepts: tests/cli/test_scriptdoc.py
fails when the committed page differs from what this module writes.

    python3 -m macrohard.cli.scriptdoc > docs/script-format.md
"""

from __future__ import annotations

import json
from typing import Any

from macrohard.agent.disputes import DisputeTest, RuleDispute
from macrohard.agent.tools import (
    TOOL_NAMES, AddTicket, DescribeProduct, EditFile, Finish, ListFiles, ReadFile, RunShell, WriteFile,
)
from macrohard.llm.scripted import ScriptStep
from macrohard.roles import default_roles_dir, load_roles

TOOLS: list[Any] = [
    ListFiles, ReadFile, WriteFile, EditFile, RunShell, AddTicket, DescribeProduct, DisputeTest, RuleDispute, Finish,
]

# What each key of a step does; the page refuses to be written while the loader knows a key this does not.
STEP_KEYS = {
    "say": "the assistant's text (optional); a step with `say` and no `calls` is sent as a `finish` call with "
           "`say` as its summary, so it ends the session",
    "calls": "tool calls, each `- TOOL: {ARGUMENTS}`; or `- {tool: TOOL, raw: 'TEXT'}` to send malformed arguments on purpose",
    "expect": "a text, or a list of texts, that must appear in what the model was sent since its last answer "
              "(tool results, or the task's prompt); otherwise the run stops, naming the step",
    "end": "`true` ends the script's session after this step's calls (for a session the agent ends some other "
           "way, such as its step limit or a streak of failed calls)",
    "announce": "`true`: a reply without calls that does not end the session (a model announcing its plan, or a "
                "tool call written as JSON in `say`): the agent answers it with a reminder, or recovers the call",
    "cut": "`true`: the answer was cut at the model's output limit; its last call is not run and the model is told "
           "to write large files in parts",
}

ROLE_ORDER = ["product_manager", "engineer", "tester", "deployer"]

# What the orchestrator needs from each role, in a script as with a real model.
ROLE_DUTIES = {
    "product_manager": (
        "`plan`",
        [
            "Call `add_ticket` at least once, then `finish`: a plan is accepted only from a session that finished, "
            "and `finish` is refused while the plan has no ticket or an empty criterion. A call with bad arguments is "
            "an error given back to the model, and adds nothing; `macrohard audit RUN --kind tool.call` shows it. "
            "When no session finishes a plan (`max_attempts` of them), the run stops, resumable, with the reason.",
            "Write `docs/PRD.md`: it is committed with the plan and shown at the plan gate (`--approve plan`).",
            "Call `describe_product` to say how the released product runs: the release builds its image and runs "
            "that smoke command in it (no network, only the product's files), and tags only when it exits 0 (for a "
            "`service`, when its health path answers). Without it, the stack's default check imports every "
            "top-level package that is not a test (without a package, every top-level module).",
            "`depends_on` names earlier tickets only (`T-1` for the first `add_ticket`, and so on).",
            "A rejected plan is written again in the next session: its prompt holds \"Your previous plan was rejected "
            "with this comment\", and the tickets of the new plan replace the old ones.",
        ],
    ),
    "engineer": (
        "the ticket's id: `T-1`, `T-2` and so on",
        [
            "Change the product's code (anything outside the tester's territory) so the ticket's criteria hold.",
            "One session per attempt: attempt 2 starts the second session, and its prompt holds \"The last attempt "
            "failed\" with the verdict's reason and output (expect a part of it, e.g. `\"1 failed\"`).",
            "A test the engineer believes wrong is disputed with `dispute_test`, never edited.",
        ],
    ),
    "tester": (
        "the ticket's id: `T-1`, `T-2` and so on",
        [
            "Add at least one test (under `tests/`) in every ticket: a ticket passes only with a test its tester "
            "added, and each such test must fail on the ticket's base (main before the ticket).",
            "Runs after the engineer in each attempt, with one session per attempt; the verdict that decides is the "
            "orchestrator's own test run, not the tester's word.",
            "Rules on the engineer's disputes with `rule_dispute` when asked to.",
        ],
    ),
    "deployer": (
        "`release`",
        [
            "Write `RELEASE_NOTES.md` (or `CHANGELOG.md`): it is committed and shown at the release gate "
            "(`--approve deploy`). The orchestrator builds, checks and tags the release itself.",
            "May write a `Dockerfile` (and `.dockerignore`) for the product's image, within the safe subset: its "
            "FROM is replaced by the sandbox image; RUN, ADD, ARG, ONBUILD, SHELL, VOLUME and other stages are "
            "refused. Without one, the default image puts the product in `/app`.",
            "A refused Dockerfile, a failed build or a failed smoke check starts the next session (up to "
            "`max_attempts`), whose prompt holds \"Your last release attempt failed\" with the output; then the run "
            "fails untagged.",
            "A rejected release is written again in the next session, whose prompt holds \"Your previous release notes "
            "were rejected with this comment\".",
        ],
    ),
}


def _type(schema: dict[str, Any]) -> str:
    if "anyOf" in schema:
        kinds = [_type(s) for s in schema["anyOf"] if s.get("type") != "null"]
        return " or ".join(kinds) + (" or null" if any(s.get("type") == "null" for s in schema["anyOf"]) else "")
    if "enum" in schema:
        return " or ".join(f"`{json.dumps(v)}`" for v in schema["enum"])
    if schema.get("type") == "array":
        return f"list of {_type(schema.get('items', {}))}"
    return {"string": "text", "number": "number", "integer": "integer", "boolean": "true/false"}.get(
        str(schema.get("type")), str(schema.get("type", "any")))


def _limits(schema: dict[str, Any]) -> list[str]:
    out = []
    for options in [schema, *schema.get("anyOf", [])]:
        if "minLength" in options:
            out.append("not empty" if options["minLength"] == 1 else f"at least {options['minLength']} characters")
        if "minItems" in options:
            out.append("at least one item" if options["minItems"] == 1 else f"at least {options['minItems']} items")
        if "exclusiveMinimum" in options:
            out.append(f"more than {options['exclusiveMinimum']}")
        if "minimum" in options:
            out.append(f"at least {options['minimum']}")
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def tool_section(tool: Any) -> list[str]:
    schema = tool.Args.model_json_schema()
    required = set(schema.get("required", []))
    lines = [f"### `{tool.name}`", "", _cell(tool.description), ""]
    properties = schema.get("properties", {})
    if not properties:
        return [*lines, "No arguments.", ""]
    lines += ["| argument | type | required | meaning |", "|---|---|---|---|"]
    for name, prop in properties.items():
        if name in required:
            needed = "yes"
        else:
            default = prop.get("default", [] if prop.get("type") == "array" else None)
            needed = f"no (default `{json.dumps(default)}`)"
        meaning = "; ".join(x for x in (str(prop.get("description") or ""), ", ".join(_limits(prop))) if x) or "—"
        lines.append(f"| `{name}` | {_cell(_type(prop))} | {needed} | {_cell(meaning)} |")
    example = {name: _example(prop) for name, prop in properties.items() if name in required}
    lines += ["", "```yaml", f"- {tool.name}: {json.dumps(example, ensure_ascii=False)}", "```", ""]
    return lines


def _example(prop: dict[str, Any]) -> Any:
    kind = prop.get("type") or next((s.get("type") for s in prop.get("anyOf", []) if s.get("type") != "null"), "string")
    if "enum" in prop:
        return prop["enum"][0]
    if kind == "array":
        return ["..."]
    if kind in ("number", "integer"):
        return 1
    return "..."


def render() -> str:
    """The whole page, as docs/script-format.md holds it."""
    names = {tool.name for tool in TOOLS}
    if names != set(TOOL_NAMES):
        raise RuntimeError(f"the tool list is out of date: documented {sorted(names)}, known {sorted(TOOL_NAMES)}")
    if set(STEP_KEYS) != set(ScriptStep.model_fields):
        raise RuntimeError(f"the step keys are out of date: documented {sorted(STEP_KEYS)}, "
                           f"known {sorted(ScriptStep.model_fields)}")
    roles = load_roles(default_roles_dir())
    out = [
        "# Writing a model script",
        "",
        "<!-- Generated by `python3 -m macrohard.cli.scriptdoc > docs/script-format.md` from the tools, the bundled",
        "     role files and the script loader; edit those (or the generator), not this page. -->",
        "",
        "A model script replays a model's answers, so a run needs no endpoint and no key:",
        "`macrohard run spec.md --script script.yaml` (the demo's is",
        "[examples/demo/script.yaml](../examples/demo/script.yaml)). Everything else in the run is real:",
        "the tools, the sandbox, git and the verdicts.",
        "",
        "## The file",
        "",
        "YAML: a role, then a task, then the list of steps the model answers with, one answer a step.",
        "",
        "```yaml",
        "engineer:",
        "  T-1:",
        "    - say: Writing the module.",
        "      calls:",
        "        - write_file: {path: app.py, content: \"print('hi')\\n\"}",
        "    - expect: \"wrote app.py\"",
        "      say: Done.",
        "```",
        "",
        "| key | meaning |",
        "|---|---|",
        *[f"| `{key}` | {_cell(STEP_KEYS[key])} |" for key in ScriptStep.model_fields],
        "",
        "A role's steps on a task fall into sessions: a session ends at a step that finishes (a `finish`",
        "call, or a step without calls), or one marked `end: true`, and the steps after it are the next",
        "session. A session ends in a run only through `finish`; a session the agent ends some other way",
        "(its step limit, replies without a call after every reminder, a streak of failed calls) is an",
        "unfinished attempt, told to the next one. Session N answers the role's N-th go at",
        "the task: the ticket's N-th attempt, or the plan or release notes written again after a rejection.",
        "Within a session, the number of answers already in the conversation picks the step, so a resumed",
        "run replays exactly what was interrupted. A script that runs out (no step, or no session, left for",
        "what the run asks) or whose `expect` is not met stops the run with an error naming the step.",
        "",
        "## What each role must do",
        "",
    ]
    for name in ROLE_ORDER:
        task, duties = ROLE_DUTIES[name]
        role = roles.get(name)
        out += [f"### {name}", "", f"Task: {task}."]
        if role is not None:
            out.append(f"Tools (bundled role file): {', '.join(f'`{t}`' for t in role.tools)}.")
            out.append(f"May change: {', '.join(f'`{p}`' for p in role.territory) or 'nothing'}.")
        out += ["", *[f"- {d}" for d in duties], ""]
    out += [
        "A role may call only the tools its role file lists, and write only inside its territory: a write",
        "outside it is refused, and what a shell command changes outside it is put back at the commit.",
        "",
        "## Tools",
        "",
        "Arguments are JSON values (YAML in a script). A call whose arguments do not match is an error",
        "given back to the model (`bad arguments for add_ticket: acceptance_criteria: Field required`),",
        "not a failure of the run; a scripted model goes on with its next step regardless.",
        "",
    ]
    for tool in TOOLS:
        out += tool_section(tool)
    return "\n".join(out).rstrip("\n") + "\n"


if __name__ == "__main__":
    print(render(), end="")
