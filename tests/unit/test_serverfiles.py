"""What setup-node pushes, its version, and that the script agrees with paths.py."""

from __future__ import annotations

import ast
import re
import subprocess
import sys

import pytest

from silverlining import serverfiles
from silverlining.node import paths

# script variable -> paths.py constant (the script cannot import Python)
SCRIPT_PATHS = {
    "SHARE": paths.SHARE, "LIB": paths.LIB, "SERVER_FILES": paths.SERVER_FILES,
    "VAR": paths.VAR, "APPS": paths.APPS, "DATA": paths.DATA, "ENV_DIR": paths.ENV,
    "BACKUPS": paths.BACKUPS, "UPLOADS": paths.UPLOADS, "TMP": paths.TMP, "STATUS": paths.STATUS,
    "SECRET": paths.SECRET, "ETC": paths.ETC, "SERVER_VERSION": paths.SERVER_VERSION,
    "LOGS": paths.LOGS, "APP_LOGS": paths.APP_LOGS, "SETUP_LOG": paths.SETUP_LOG,
    "LOCKS": paths.LOCKS, "NGINX_ROUTES": paths.NGINX_ROUTES, "DEPLOY_USER": paths.DEPLOY_USER,
    "CERTS": paths.CERTS, "ACME_WEBROOT": paths.ACME_WEBROOT, "ACME_CA": paths.ACME_CA,
    "ENTRY": paths.ENTRY,
}


def _script_values() -> dict[str, str]:
    """The script's top-level path assignments, with $VAR references expanded."""
    values: dict[str, str] = {}
    for line in serverfiles.script_text().splitlines():
        m = re.match(r"^([A-Z_]+)=([^ ]+)$", line)
        if m:
            values[m.group(1)] = re.sub(r"\$([A-Z_]+)", lambda v: values[v.group(1)], m.group(2))
    return values


def test_script_paths_match_paths_py():
    values = _script_values()
    for name, expected in SCRIPT_PATHS.items():
        assert values.get(name) == str(expected), name
    assert str(paths.SETUP_SCRIPT) == f"{values['SERVER_FILES']}/{serverfiles.SCRIPT_NAME}"


def test_serverroot_paths_match_paths_py():
    root = serverfiles.server_files_dir() / "serverroot"
    assert (root / str(paths.ENTRY).lstrip("/")).is_file()
    for page in ("not-found.html", "disabled.html"):
        assert (root / str(paths.PAGES).lstrip("/") / page).is_file()
    entry = (root / str(paths.ENTRY).lstrip("/")).read_text()
    assert f'"{paths.LIB}"' in entry
    nginx = (root / "etc/nginx/conf.d/silverlining.conf").read_text()
    assert f"include {paths.NGINX_ROUTES}/*.conf;" in nginx
    assert f"root {paths.PAGES};" in nginx
    assert f"root {paths.ACME_WEBROOT};" in nginx
    sudoers = (root / "etc/sudoers.d/silverlining").read_text()
    assert f"{paths.DEPLOY_USER} ALL=(root) NOPASSWD: {paths.ENTRY}" in sudoers


def test_script_is_valid_bash():
    script = serverfiles.server_files_dir() / serverfiles.SCRIPT_NAME
    subprocess.run(["bash", "-n", str(script)], check=True)


def test_node_code_ships_without_client_modules():
    shipped = {rel for rel, _ in serverfiles.node_code_files()}
    assert "silverlining/node/__main__.py" in shipped
    assert "silverlining/node/paths.py" in shipped
    assert "silverlining/node/setup.py" in shipped
    for app_facing in ("params.py", "secret.py"):       # deployed apps import these
        assert f"silverlining/{app_facing}" in shipped, app_facing
    for rel in shipped:
        assert rel.split("/")[1] in serverfiles.NODE_SHIPPED, rel
        assert "__pycache__" not in rel and not rel.endswith(".pyc"), rel
    for client in ("cli.py", "transport.py", "serverfiles.py", "commands", "providers",
                   "devserver", "state.py"):
        assert not any(rel.split("/")[1] == client for rel in shipped), client


# Imports of shipped code that only ever run on the developer's machine (``silver
# serve``'s own PostgreSQL), never on a node.
DEVELOPER_ONLY = {("silverlining/services/postgresql.py", "silverlining.devserver")}


def _imports(source: str) -> set[str]:
    """Every module a file imports, at any depth of its code (absolute names)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_node_code_imports_only_the_standard_library_and_itself():
    shipped = {rel for rel, _ in serverfiles.node_code_files()}
    modules = {rel[:-len(".py")].removesuffix("/__init__").replace("/", ".")
               for rel in shipped if rel.endswith(".py")}
    for rel, path in serverfiles.node_code_files():
        if not rel.endswith(".py"):
            continue
        for name in _imports(path.read_text()):
            top = name.split(".")[0]
            if top == "silverlining":
                # ``from silverlining.node import paths``: the module or a name in it
                assert name in modules or name.rpartition(".")[0] in modules or any(
                    (rel, m) in DEVELOPER_ONLY for m in (name, name.rpartition(".")[0])), \
                    f"{rel} imports {name}, which is not shipped to nodes"
            else:
                assert top in sys.stdlib_module_names or top == "__future__", \
                    f"{rel} imports {name}: node code is standard library only"


def test_stage_holds_exactly_the_pushed_files(tmp_path):
    staged = serverfiles.stage(tmp_path / "stage")
    on_disk = {p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file()}
    assert on_disk == {rel for rel, _ in serverfiles.pushed_files()}
    assert (staged / serverfiles.SCRIPT_NAME).read_text() == serverfiles.script_text()
    # fixed mtimes and modes: rsync --checksum then reports content changes only
    assert {p.stat().st_mtime for p in staged.rglob("*")} == {serverfiles._STAGED_MTIME}
    again = serverfiles.stage(tmp_path / "stage")
    assert again == staged


def test_version_follows_content(tmp_path, monkeypatch):
    first = serverfiles.version()
    assert re.fullmatch(r"[0-9a-f]{16}", first)
    copy = tmp_path / "server-files"
    subprocess.run(["cp", "-r", str(serverfiles.server_files_dir()), str(copy)], check=True)
    link = tmp_path / "link"
    link.symlink_to(copy)
    monkeypatch.setattr(serverfiles, "SERVER_FILES_LINK", link)
    serverfiles.version.cache_clear()
    try:
        assert serverfiles.version() == first          # same content, other place
        page = copy / "serverroot" / str(paths.PAGES).lstrip("/") / "not-found.html"
        page.write_text(page.read_text() + "<!-- changed -->\n")
        serverfiles.version.cache_clear()
        assert serverfiles.version() != first
    finally:
        serverfiles.version.cache_clear()


def test_missing_server_files_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(serverfiles, "SERVER_FILES_LINK", tmp_path / "nowhere")
    with pytest.raises(serverfiles.SilverError, match="server files not found"):
        serverfiles.server_files_dir()


def _node_digest(tree) -> str:
    """The setup script's own digest of ``tree`` as the node's pushed copy (its
    functions, without its last line, ``main "$@"``)."""
    text = serverfiles.script_text()
    body, last = text.rstrip("\n").rsplit("\n", 1)
    assert last == 'main "$@"'
    return subprocess.run(
        ["bash", "-c", 'eval "$(cat)"; SERVER_FILES=$1; pushed_digest; echo "$PUSHED_DIGEST"',
         "digest", str(tree)],
        input=body, text=True, capture_output=True, check=True).stdout.strip()


def test_the_node_digests_a_pushed_tree_as_the_client_does(tmp_path):
    staged = serverfiles.stage(tmp_path / "stage")
    ours = serverfiles.pushed_digest()
    assert re.fullmatch(r"[0-9a-f]{64}", ours)
    assert _node_digest(staged) == ours
    # anything an rsync --delete of the tree would change, the digest sees
    (staged / "lib" / "extra").mkdir()
    assert _node_digest(staged) != ours
    (staged / "lib" / "extra").rmdir()
    (staged / "lib" / "link").symlink_to(staged / serverfiles.SCRIPT_NAME)
    assert _node_digest(staged) != ours
    (staged / "lib" / "link").unlink()
    script = staged / serverfiles.SCRIPT_NAME
    script.chmod(0o664)
    assert _node_digest(staged) != ours
    script.chmod(0o644)
    script.write_text(script.read_text() + "# edited\n")
    assert _node_digest(staged) != ours
    script.write_text(serverfiles.script_text())
    assert _node_digest(staged) == ours
