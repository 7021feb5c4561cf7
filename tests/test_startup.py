"""Start-up as a user meets it: each mistake is one line on stderr and exit
status 2 (no traceback), whole numbers work for float options, and --help
lists our options first, grouped, as the README spells them."""

from __future__ import annotations

import os
import re
import socket
import sys
from collections.abc import Iterator

import pytest

import server as server_module
from tests.command import SERVER, Command, run_server_command

README = os.path.join(os.path.dirname(SERVER), "README.md")


def assert_one_line_error(result, *words: str) -> str:
    """Exit 2, nothing on stdout, one ``wshub: error:`` line holding ``words``."""
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("wshub: error: ")
    for word in words:
        assert word in lines[0]
    return lines[0]


def test_unknown_option_names_it_and_suggests_the_right_one() -> None:
    line = assert_one_line_error(run_server_command("--prot=9001"), "--prot", "--port")
    assert "did you mean --port?" in line


def test_bad_value_says_what_kind_is_expected() -> None:
    assert_one_line_error(run_server_command("--port=abc"), "--port=abc", "whole number")
    assert_one_line_error(run_server_command("--ping_interval=soon"), "ping_interval", "a number")


def test_out_of_range_port() -> None:
    assert_one_line_error(run_server_command("--port=70000"), "--port=70000", "1-65535")


def test_missing_config_file(tmp_path) -> None:
    missing = tmp_path / "nope.conf"
    assert_one_line_error(run_server_command(f"--config={missing}"), str(missing), "--config")


def test_config_file_mistakes(tmp_path) -> None:
    typo = tmp_path / "typo.conf"
    typo.write_text("prot = 9001\n")
    assert_one_line_error(run_server_command(f"--config={typo}"), "'prot'", "did you mean port?")
    syntax = tmp_path / "syntax.conf"
    syntax.write_text("port = = 1\n")
    assert_one_line_error(run_server_command(f"--config={syntax}"), "line 1")
    wrong = tmp_path / "wrong.conf"
    wrong.write_text("history_size = 'lots'\n")
    assert_one_line_error(run_server_command(f"--config={wrong}"), "history_size", "whole number")


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port something else already listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_port_in_use_says_so_and_how_to_fix_it(busy_port) -> None:
    line = assert_one_line_error(
        run_server_command(f"--port={busy_port}"), str(busy_port), "in use", "--port"
    )
    assert "--port=0" in line


def test_bad_origin_is_a_one_line_error() -> None:
    assert_one_line_error(run_server_command("--allowed_origins=app.example"), "full origin")


def test_whole_numbers_are_fine_for_float_options(tmp_path, restore_options) -> None:
    config = tmp_path / "hub.conf"
    config.write_text("ping_interval = 20\nrate_limit = 50\nhistory_ttl = 60\nport = 0\n")
    server_module.load_options(["wshub", f"--config={config}"])
    options = restore_options
    assert (options.ping_interval, options.rate_limit, options.history_ttl) == (20.0, 50.0, 60.0)
    assert isinstance(options.ping_interval, float)
    with Command([sys.executable, SERVER, f"--config={config}"]) as proc:
        assert proc.port > 0
        assert "Traceback" not in proc.log()


def test_help_lists_our_options_first_grouped_with_underscores() -> None:
    result = run_server_command("--help")
    assert result.returncode == 0 and "Traceback" not in result.stderr
    text = result.stdout
    assert "site-packages" not in text and ".py options" not in text
    headings = re.findall(r"^(\S.*):$", text, re.MULTILINE)
    ours = [g for g in server_module.OPTION_GROUPS if g in headings]
    assert headings[: len(ours)] == ours and len(ours) == len(server_module.OPTION_GROUPS)
    assert headings.index("Logging (Tornado's options)") > headings.index(ours[-1])
    for group in server_module.OPTION_GROUPS:
        for name in server_module.options.group_dict(group):
            entry = re.search(rf"^  --{name}\s+(\S.*)$", text, re.MULTILINE)
            assert entry, f"--{name} is missing from --help"
            assert len(entry.group(1)) > 10  # a help text, not just the name
    assert "--max_connections_per_ip " in text and "--max-connections" not in text
    assert text.index("--port") < text.index("--logging")
    # Every option the README's table documents is in --help, spelled the same.
    with open(README, encoding="utf-8") as readme:
        documented = re.findall(r"^\| `(\w+)` \|", readme.read(), re.MULTILINE)
    assert documented and all(re.search(rf"--{name}\b", text) for name in documented)


def test_processes_need_a_shared_broker_and_brokers_need_a_url() -> None:
    assert_one_line_error(run_server_command("--processes=2"), "--processes=2", "--broker=redis://")
    assert_one_line_error(
        run_server_command("--broker=mysql://db"), "--broker=mysql://db", "redis://"
    )
