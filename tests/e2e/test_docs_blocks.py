"""Every fenced code block of README.md and docs/operations.md is one this suite runs, so that a command
added to the docs, or a section renamed, shows here until a test runs it; the README's links resolve."""

import re
import subprocess

from tests.e2e.processes import REPO

# (file, section, language ("" for shell), the block's text or None for the section's only block in that
# language): what runs it.
RUN_BY = {
    ("README.md", "Quick start", "", "make run"): "conftest.quick_start (started once, stopped by test_shutdown)",
    # Not run: `make test` runs the whole suite, this one included; run from here it would start itself again.
    ("README.md", "Quick start", "", "make test"): None,
    ("README.md", "Integrate a service", "python", None): "test_integrate_a_service: the Python client's lines",
    ("README.md", "Integrate a service", "", None): "test_integrate_a_service: the shell's key, route and report",
    ("README.md", "The policy", "", None): "test_policy_file",
    ("operations.md", "Running in production", "", None): "conftest.production (started once, stopped by test_shutdown)",
}


def _entry(block):
    exact = (block.source, block.section, block.language, block.text.strip())
    return exact if exact in RUN_BY else (block.source, block.section, block.language, None)


def test_every_code_block_of_the_docs_is_one_this_suite_runs(readme_blocks, operations_blocks):
    blocks = readme_blocks + operations_blocks
    unknown = [f"{block} [{block.language or 'shell'}]:\n{block.text}" for block in blocks if _entry(block) not in RUN_BY]
    assert not unknown, "code blocks no e2e test runs (add them to RUN_BY and a test):\n" + "\n".join(unknown)
    entries = [_entry(block) for block in blocks]
    assert sorted(entries, key=str) == sorted(RUN_BY, key=str), "each entry of RUN_BY names exactly one block of the docs"


def test_the_readme_links_to_files_the_checkout_has():
    tracked = set(subprocess.run(["git", "ls-files"], cwd=REPO, check=True, capture_output=True, text=True).stdout.split())
    links = re.findall(r"\]\(([^)#\s]+)\)", (REPO / "README.md").read_text())
    local = [link for link in links if not re.match(r"^[a-z]+:", link)]
    assert local
    assert [link for link in local if link not in tracked] == []
