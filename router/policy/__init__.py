"""The policy file: the routing policy as code (YAML or JSON, see policy.example.yaml).

`document.parse_policy` reads a document and `document.dump_policy` writes one; `apply.apply_policy`
validates a document whole (`validate`) and then makes the database equal to it in one transaction;
`export.export_policy` gives the current policy back in the same format. Importing an export
changes nothing, not even the policy version.
"""
