"""A live object seen through the fields we manage: what the plan compares with the desired record."""
from __future__ import annotations

import base64

from reconciler.kube.compare import live_record
from reconciler.render import fingerprint


def managed(fields: dict, manager: str = "us", operation: str = "Apply") -> dict:
    return {"manager": manager, "operation": operation, "fieldsType": "FieldsV1", "fieldsV1": fields}


LIVE = {
    "apiVersion": "v1", "kind": "ConfigMap",
    "metadata": {"name": "a", "namespace": "ns", "uid": "u-1", "resourceVersion": "7",
                 "labels": {"ours": "1", "theirs": "2"},
                 "managedFields": [managed({"f:metadata": {"f:labels": {"f:ours": {}}},
                                            "f:data": {"f:kept": {}},
                                            "f:spec": {"f:ports": {"k:{\"port\":80}": {".": {}}}}}),
                                   managed({"f:metadata": {"f:labels": {"f:theirs": {}}}}, manager="kubectl",
                                           operation="Update")]},
    "data": {"kept": "k", "wanted": "w", "other": "o"},
    "spec": {"ports": [{"port": 80}], "defaulted": True},
    "status": {"phase": "Ready"},
}


def test_the_desired_fields_and_our_own_are_kept_and_nothing_else():
    desired = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "ns"},
               "data": {"wanted": "x"}}
    record = live_record(LIVE, desired, manager="us", salt="s")
    assert record == {"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": "a", "namespace": "ns", "labels": {"ours": "1"}},
                      "data": {"wanted": "w", "kept": "k"}, "spec": {"ports": [{"port": 80}]}}
    assert list(record["data"]) == ["wanted", "kept"]  # the desired object's order first, so a diff lines up


def test_without_a_desired_object_it_is_our_fields_and_the_identity():
    record = live_record(LIVE, None, manager="us", salt="s")
    assert record == {"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": "a", "namespace": "ns", "labels": {"ours": "1"}},
                      "data": {"kept": "k"}, "spec": {"ports": [{"port": 80}]}}
    assert live_record(LIVE, None, manager="nobody", salt="s") == {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "ns"}}


def test_a_desired_map_is_compared_whole_where_it_is_empty_and_absent_fields_stay_absent():
    desired = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "ns"},
               "data": {}, "spec": {"missing": {"deep": 1}}}
    record = live_record(LIVE, desired, manager="nobody", salt="s")
    assert record["data"] == LIVE["data"] and "spec" not in record


def test_secret_values_become_fingerprints():
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "env", "namespace": "ns"},
              "data": {"TOKEN": base64.b64encode(b"value").decode()}}
    record = live_record(secret, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "env", "namespace": "ns"},
                                  "data": {"TOKEN": "?"}}, manager="us", salt="salt")
    assert record["data"] == {"TOKEN": fingerprint("salt", "TOKEN", "value")}
