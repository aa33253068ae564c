"""Alike parts of many objects held once (the watch loop's render memo and live cache)."""
from __future__ import annotations

import json

from reconciler.shapes import SharedShapes


def test_alike_parts_become_one_object_and_each_object_reads_as_before():
    shapes = SharedShapes()
    one = {"name": "a", "spec": {"containers": [{"image": "x:1", "resources": {"cpu": "1"}}]}}
    two = {"name": "b", "spec": {"containers": [{"image": "x:1", "resources": {"cpu": "1"}}]}}
    before = [json.dumps(one), json.dumps(two)]
    for obj in (one, two):
        assert shapes.parts(obj) is obj
    assert [json.dumps(one), json.dumps(two)] == before
    assert one["spec"] is two["spec"] and one["spec"]["containers"][0] is two["spec"]["containers"][0]


def test_values_equal_in_python_but_not_in_json_stay_apart():
    shapes = SharedShapes()
    parts = [shapes.share({"v": value}) for value in (1, 1.0, True, "1", 1)]
    assert parts[0] is parts[4]
    assert len({id(p) for p in parts}) == 4
    assert shapes.share(["a"]) is not shapes.share({"0": "a"})


def test_large_parts_are_not_kept_but_their_small_parts_are():
    shapes = SharedShapes(largest=40)
    big = [{"k": "v"}, "x" * 50]
    other = [{"k": "v"}, "x" * 50]
    assert shapes.share(big) is big and shapes.share(other) is other
    assert big[0] is other[0]


def test_the_table_starts_again_past_its_limit_and_shares_again_at_once():
    shapes = SharedShapes(limit=3)
    for index in range(10):
        shapes.share({"unique": index})
    assert len(shapes._known) <= 3
    first = shapes.share({"common": True})
    assert shapes.share({"common": True}) is first


def test_dicts_alike_but_for_the_order_of_their_keys_are_one():
    shapes = SharedShapes()
    rendered = shapes.share({"name": "agent", "image": "x:1"})
    listed = shapes.share({"image": "x:1", "name": "agent"})  # as a server sends it: keys sorted
    assert listed is rendered and listed == {"image": "x:1", "name": "agent"}


def test_the_table_holds_about_what_its_parts_say_as_json():
    """Each kept shape costs about its JSON text: orjson's bytes keep a 4 KiB buffer each, which at 10,000
    agents came to 55 MiB of the table's keys."""
    import tracemalloc

    tracemalloc.start()
    try:
        shapes = SharedShapes()
        started = tracemalloc.get_traced_memory()[0]
        for i in range(2_000):
            shapes.share({"app": f"agent-{i}"})
        held = tracemalloc.get_traced_memory()[0] - started
    finally:
        tracemalloc.stop()
    assert held < 2_000 * 1_024  # with bytes keys: over 2,000 * 4 KiB
