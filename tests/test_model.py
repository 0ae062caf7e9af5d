"""The data contract in memops/model.py."""

from __future__ import annotations

from memops import model


def test_a_namespace_pattern_takes_its_keys_and_key_in_namespace_drops_the_extensions():
    key = model.redis_key("memops", "acme", "session", "1")
    extension = model.redis_key("memops", "acme:eu", "session", "1")
    assert model.namespace_pattern("memops", "glob*") == "memops:memory:glob\\*:*"
    assert model.key_in_namespace(key, "memops", "acme")
    assert not model.key_in_namespace(extension, "memops", "acme")
    regex = model.namespace_key_regex("memops", "acme")
    assert regex.fullmatch(key.encode()) and not regex.fullmatch(extension.encode())


def test_a_quarantine_collection_names_its_source_for_its_namespace_only():
    hidden = model.quarantine_collection("memory", "acme")
    assert model.is_quarantine_collection(hidden)
    assert model.source_collection(hidden, "acme", ["memory", "other"]) == "memory"
    assert model.source_collection(hidden, "beta", ["memory", "other"]) is None
    assert model.point_payload("acme", "fact", "m1")[model.NAMESPACE_FIELD] == "acme"


def test_json_documents_carry_the_new_key_beside_the_old_one_for_a_release():
    document = {"tenant": "acme", "plans": [{"tenants": ["a"]}], "namespace": "kept"}
    assert model.with_namespace_keys(document) == {
        "tenant": "acme",
        "namespace": "kept",
        "plans": [{"tenants": ["a"], "namespaces": ["a"]}],
    }
