import pytest

from macrohard.agent.tools import TOOL_NAMES
from macrohard.errors import ConfigError
from macrohard.roles import REQUIRED_ROLES, load_roles
from macrohard._resources import resource_dir


def copy_roles(tmp_path):
    folder = tmp_path / "roles"
    folder.mkdir(parents=True)
    for p in resource_dir("roles").glob("*.md"):
        (folder / p.name).write_text(p.read_text())
    return folder


def test_bundled_roles_load():
    roles = load_roles(resource_dir("roles"), known_tools=set(TOOL_NAMES))
    assert set(REQUIRED_ROLES) <= set(roles)
    assert "run_shell" in roles["engineer"].tools and "add_ticket" in roles["product_manager"].tools
    assert roles["engineer"].prompt.startswith("You are a software engineer")


def test_editing_a_role_file_changes_the_role(tmp_path):
    folder = copy_roles(tmp_path)
    text = (folder / "tester.md").read_text().replace("max_steps: 20", "max_steps: 7")
    (folder / "tester.md").write_text(text + "\nAlways test unicode input.\n")
    tester = load_roles(folder)["tester"]
    assert tester.max_steps == 7 and tester.prompt.endswith("Always test unicode input.")


def test_missing_role_unknown_tool_and_bad_front_matter(tmp_path):
    folder = copy_roles(tmp_path)
    (folder / "deployer.md").unlink()
    with pytest.raises(ConfigError, match="has no role deployer"):
        load_roles(folder)
    folder = copy_roles(tmp_path / "b")
    (folder / "engineer.md").write_text("---\ntools: [teleport]\n---\nhi")
    with pytest.raises(ConfigError, match="unknown tool teleport"):
        load_roles(folder, known_tools=set(TOOL_NAMES))
    (folder / "engineer.md").write_text("---\nmax_steps: many\n---\nhi")
    with pytest.raises(ConfigError, match="max_steps"):
        load_roles(folder)
    with pytest.raises(ConfigError, match="does not exist"):
        load_roles(tmp_path / "nowhere")


def test_every_bundled_role_finishes_through_the_finish_tool():
    roles = load_roles(resource_dir("roles"), known_tools=set(TOOL_NAMES))
    for role in roles.values():
        assert "finish" in role.tools, role.name
        assert "call `finish`" in role.prompt.lower() and "no tool call" not in role.prompt, role.name
