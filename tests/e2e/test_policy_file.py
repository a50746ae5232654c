"""README "The policy": export the policy to a file and import it back, as written; importing what was
exported changes nothing."""

import yaml

from tests.e2e.processes import block_in


def test_export_then_import_is_a_no_op(deployment, readme_blocks):
    run = deployment.run_block(block_in(readme_blocks, "The policy"))

    assert run.result.returncode == 0, run
    exported = yaml.safe_load((deployment.root / "policy.yaml").read_text())
    assert {"providers", "models", "tiers", "categories", "routes"} <= set(exported)
    assert "general" in [category["slug"] for category in exported["categories"]]
    assert "No changes: policy is already at version" in run.stdout, run
