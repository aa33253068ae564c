"""The watcher's live cache: LIST once, then WATCH; hand edits and deletes heal at once, our own writes
are no change, a 410 lists again, and a no-op round asks the server nothing."""
from __future__ import annotations

import threading

import pytest
from factories import agent_yaml
from fakekube import FakeKube
from watching import push, wait_for, watcher

from reconciler.kube.cache import LiveCache
from reconciler.kube.client import connect
from reconciler.kube.live import owner_selector
from reconciler.render import ObjectKey, managed_kinds
from reconciler.shapes import SharedShapes, shared_with

EXT, CORE = "extensions.agents.x-k8s.io", "agents.x-k8s.io"


@pytest.fixture
def kube():
    with FakeKube() as server:
        server.create_namespace("agents")
        server.bookmark_interval = 0.2
        yield server


@pytest.fixture
def cluster(kube, tmp_path):
    return connect(kubeconfig=str(kube.kubeconfig(tmp_path / "kubeconfig")))


def config_map(kube: FakeKube, name: str, value: str, source: str = "default") -> dict:
    return kube.write("", "configmaps", "agents", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": name, "namespace": "agents", "labels": {"app.kubernetes.io/managed-by": "agent-reconciler",
                                                        "agent-reconciler.io/source": source}},
        "data": {"k": value}}, manager="test", operation="Update")


def test_objects_alike_share_their_field_sets_and_short_strings_but_read_as_the_server_sent_them(kube, cluster):
    for name in ("a", "b"):
        config_map(kube, name, "shared-value")
    cache = LiveCache(cluster, [("v1", "ConfigMap")], owner_selector("default")).start()
    try:
        assert cache.wait_synced(10)
        config_map(kube, "c", "shared-value")  # through the watch, not the LIST
        wait_for(lambda: ObjectKey.of("ConfigMap", "agents", "c") in cache.snapshot())
        seen = cache.snapshot()
        a, b, c = (seen[ObjectKey.of("ConfigMap", "agents", name)] for name in "abc")
        assert [a, b] == [kube.get("", "configmaps", "agents", name) for name in "ab"]
        fields = [o["metadata"]["managedFields"][0]["fieldsV1"] for o in (a, b, c)]
        assert fields[0] is fields[1] is fields[2]
        assert a["data"]["k"] is b["data"]["k"] is c["data"]["k"]
        assert a["data"] is b["data"] is c["data"] and a["metadata"]["labels"] is c["metadata"]["labels"]
        assert a["metadata"]["uid"] != b["metadata"]["uid"] and a["metadata"] is not b["metadata"]
    finally:
        cache.stop()


def test_the_cache_lists_once_then_follows_changes(kube, cluster):
    config_map(kube, "a", "1")
    config_map(kube, "other-source", "1", source="elsewhere")
    changed: list[ObjectKey] = []
    cache = LiveCache(cluster, [("v1", "ConfigMap")], owner_selector("default"), on_change=changed.append).start()
    try:
        assert cache.wait_synced(10)
        assert [k.name for k in cache.snapshot()] == ["a"]
        config_map(kube, "a", "2")
        wait_for(lambda: cache.snapshot()[ObjectKey.of("ConfigMap", "agents", "a")]["data"] == {"k": "2"})
        config_map(kube, "b", "1")
        wait_for(lambda: ObjectKey.of("ConfigMap", "agents", "b") in cache.snapshot())
        kube.delete("", "configmaps", "agents", "a", dry_run=False)
        wait_for(lambda: ObjectKey.of("ConfigMap", "agents", "a") not in cache.snapshot())
        wait_for(lambda: len(changed) >= 3)
        assert [k.name for k in changed] == ["a", "b", "a"], changed
        assert cache.stats.lists == 1 and cache.stats.relists == 0
    finally:
        cache.stop()


def test_our_own_writes_are_no_change_and_status_updates_neither(kube, cluster):
    changed: list[ObjectKey] = []
    cache = LiveCache(cluster, [("v1", "ConfigMap")], owner_selector("default"), on_change=changed.append).start()
    try:
        assert cache.wait_synced(10)
        cache.record(config_map(kube, "ours", "1"))  # as the watcher does with what the server answered
        config_map(kube, "theirs", "1")
        wait_for(lambda: ObjectKey.of("ConfigMap", "agents", "theirs") in cache.snapshot())
        wait_for(lambda: len(changed) >= 1)
        assert [k.name for k in changed] == ["theirs"]
    finally:
        cache.stop()


def test_a_compacted_watch_lists_again_and_reports_what_it_missed(kube, cluster):
    config_map(kube, "a", "1")
    changed: list[ObjectKey] = []
    cache = LiveCache(cluster, [("v1", "ConfigMap")], owner_selector("default"), on_change=changed.append,
                      backoff=0.05).start()
    try:
        assert cache.wait_synced(10)
        # The watch is cut, and while it is an object changes and the history is compacted away.
        with kube.lock:
            kube.drop_watches()
            config_map(kube, "a", "2")
            kube.compact()
        wait_for(lambda: cache.snapshot()[ObjectKey.of("ConfigMap", "agents", "a")]["data"] == {"k": "2"})
        assert changed and changed[-1].name == "a"
        assert cache.stats.relists == 1
    finally:
        cache.stop()


def test_a_watch_answering_410_lists_again(kube, cluster):
    config_map(kube, "a", "1")
    cache = LiveCache(cluster, [("v1", "ConfigMap")], owner_selector("default"), backoff=0.05)
    cache._synced["ConfigMap"] = threading.Event()
    version = cache._list("v1", "ConfigMap")
    config_map(kube, "a", "2")
    kube.compact()
    with pytest.raises(Exception, match="too old resource version"):
        cache._watch("v1", "ConfigMap", version)
    cache.start()
    try:
        wait_for(lambda: cache.snapshot()[ObjectKey.of("ConfigMap", "agents", "a")]["data"] == {"k": "2"})
    finally:
        cache.stop()


def test_the_watcher_heals_a_hand_edit_and_a_delete_at_once_and_a_no_op_round_asks_nothing(kube, cluster, tmp_path,
                                                                                        remote):
    push(remote, {"b.yaml": agent_yaml("b", mode="warm-pool")})
    loop = watcher(tmp_path, remote, cluster=cluster, resync=3600)
    loop.interval = 3600  # only the cluster's changes wake it
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: loop.state.applied is not None and kube.get(EXT, "sandboxwarmpools", "agents", "b"))
        assert loop.live_cache is not None and loop.live_cache.stats.lists == len(managed_kinds("v1beta1"))
        # What the first sync wrote is already projected: the next round, the one a push waits for, need not.
        seen = loop.live_cache.snapshot()
        assert seen and all(loop.projections.entries[key][0] is obj for key, obj in seen.items())
        # A live part equal to the desired one is that very object: the loop holds it once.
        template = ObjectKey.of("SandboxTemplate", "agents", "b")
        desired = next(o for _, r in loop.render_memo.agents.values() for o in r.objects if o.key == template)
        assert seen[template]["spec"]["podTemplate"] is desired.body["spec"]["podTemplate"]
        runs = loop.state.runs
        kube.requests.clear()
        kube.edit(EXT, "sandboxwarmpools", "agents", "b", {"spec": {"replicas": 7}})
        wait_for(lambda: kube.get(EXT, "sandboxwarmpools", "agents", "b")["spec"]["replicas"] == 1)
        kube.delete(CORE, "sandboxes", "agents", "a", dry_run=False)
        wait_for(lambda: kube.get(CORE, "sandboxes", "agents", "a") is not None)
        assert loop.state.runs > runs
        wait_for(lambda: not loop.changed.is_set() and not loop.wake.is_set())
        # A round with nothing to do: no LIST, no write; only the open watches.
        kube.requests.clear()
        runs = loop.state.runs
        loop.state.last_sync = None  # a round now, as the resync would start one
        loop.wake.set()
        wait_for(lambda: loop.state.runs > runs)
        asked = [(m, p, q) for m, p, q in kube.requests if "watch=true" not in q]
        assert asked == []
    finally:
        loop.shutdown()
        thread.join(10)


def test_a_live_record_shares_the_parts_equal_to_the_desired_record_and_keeps_what_the_server_said():
    desired = {"metadata": {"labels": {"a": "1"}, "annotations": {"rev": "r2"}}, "spec": {"items": [1, 2], "n": 0}}
    live = {"metadata": {"labels": {"a": "1"}, "annotations": {"rev": "r1"}}, "spec": {"items": [1, 2], "n": False}}
    shared = shared_with(live, desired)
    assert shared == live and shared["metadata"]["annotations"] == {"rev": "r1"}
    assert shared["spec"]["n"] is False  # 0 == False, yet not the same value
    assert shared["metadata"]["labels"] is desired["metadata"]["labels"]
    assert shared["spec"]["items"] is desired["spec"]["items"]
    assert shared_with({"spec": {"items": [1, 2], "n": 0}, "metadata": dict(desired["metadata"])}, desired) is desired
    assert type(shared_with({"x": 1.0}, {"x": 1})["x"]) is float


def test_a_restarted_watcher_holds_the_parts_of_objects_already_in_step_once(kube, cluster, tmp_path, remote):
    push(remote, {"b.yaml": agent_yaml("b", mode="warm-pool")})
    first = watcher(tmp_path, remote, cluster=cluster)
    first.start_cache()
    first.run(once=True)
    first.shutdown()
    # A new process: its first LIST comes before anything is rendered, and its first round changes nothing.
    again = watcher(tmp_path, remote, cluster=cluster)
    # No table of alike parts (limit=1): only the desired body can share.
    again.live_cache = LiveCache(cluster, managed_kinds("v1beta1"), owner_selector("default"),
                                 counterpart=again.render_memo.body_of, shapes=SharedShapes(limit=1)).start()
    assert again.live_cache.wait_synced(10)
    kube.requests.clear()
    again.run(once=True)
    try:
        assert again.state.plan is not None and not again.state.plan.has_changes
        assert [m for m, _, q in kube.requests if "watch=true" not in q] == []
        template = ObjectKey.of("SandboxTemplate", "agents", "b")
        live = again.live_cache.snapshot()[template]
        assert live["spec"]["podTemplate"] is again.render_memo.body_of(template)["spec"]["podTemplate"]
        assert live["metadata"]["uid"] == kube.get(EXT, "sandboxtemplates", "agents", "b")["metadata"]["uid"]
    finally:
        again.shutdown()


def test_lists_alike_but_for_the_order_of_keys_in_their_dicts_are_shared():
    desired = {"containers": [{"name": "agent", "image": "x:1"}]}
    live = {"containers": [{"image": "x:1", "name": "agent"}]}  # keys sorted, as a server sends them
    assert shared_with(live, desired)["containers"] is desired["containers"]
    other = shared_with({"containers": [{"image": "x:1", "name": 0}]}, {"containers": [{"name": False, "image": "x:1"}]})
    assert other["containers"][0]["name"] == 0 and other["containers"][0]["name"] is not False


def test_a_write_of_ours_whose_watch_event_came_before_its_answer_is_no_change(kube, cluster):
    changed: list[ObjectKey] = []
    cache = LiveCache(cluster, [("v1", "ConfigMap")], owner_selector("default"), on_change=changed.append).start()
    try:
        assert cache.wait_synced(10)
        ours = config_map(kube, "ours", "1")
        key = ObjectKey.of("ConfigMap", "agents", "ours")
        wait_for(lambda: key in changed)  # the event first, as a busy writer can see it
        cache.record(ours)  # then the server's answer to the write
        theirs = config_map(kube, "theirs", "1")
        wait_for(lambda: ObjectKey.of("ConfigMap", "agents", "theirs") in changed)
        cache.record({**theirs, "metadata": {**theirs["metadata"], "resourceVersion": "1"}})  # an older answer
        assert cache.take_changes() == {ObjectKey.of("ConfigMap", "agents", "theirs")}
        assert cache.take_changes() == set()
        kube.delete("", "configmaps", "agents", "ours", dry_run=False)
        wait_for(lambda: key not in cache.snapshot())
        cache.forget(key)  # our own delete, its event first
        assert cache.take_changes() == set()
    finally:
        cache.stop()
