"""Guards: what refuses a plan before anything is written. Pure.

A refused plan is still a plan: the changes it blocks carry the reason, so a dry run shows them,
and `apply` refuses the whole revision (nothing is half-applied).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

from reconciler.plan import Change, Plan


def prune_refusal(plan: Plan, *, owned: int, allow_empty: bool, max_prune: float) -> str | None:
    """Deleting every owned object, or more than `max_prune` percent of them, at once."""
    deletes = plan.count("delete")
    if not deletes:
        return None
    if deletes == owned:
        if allow_empty:
            return None
        return (f"the revision would delete all {owned} object(s) this source owns; if that is intended, "
                "pass --allow-empty")
    if deletes * 100 > max_prune * owned:
        return (f"the revision would delete {deletes} of {owned} owned object(s), more than --max-prune "
                f"{max_prune:g}%; raise --max-prune if that is intended")
    return None


def removed_variables(change: Change) -> list[str]:
    """CONTAINER_ENV_ names the change takes out of a container-env Secret that keeps others."""
    if change.key.kind != "Secret" or change.agent is not None or change.action != "update":
        return []
    before, after = (change.before or {}).get("data") or {}, (change.after or {}).get("data") or {}
    return sorted(set(before) - set(after))


def environment_refusal(plan: Plan, *, allowed: bool) -> str | None:
    """Some CONTAINER_ENV_ variables removed while others remain, without --prune-container-env."""
    if allowed:
        return None
    removed = sorted({name for c in plan.pending for name in removed_variables(c)})
    if not removed:
        return None
    names = ", ".join(f"CONTAINER_ENV_{n}" for n in removed)
    return (f"{names} would be removed from every sandbox: the reconciler's environment no longer sets "
            f"{'it' if len(removed) == 1 else 'them'}; if that is intended, pass --prune-container-env")


def refuse(plan: Plan, reason: str, blocks: Callable[[Change], bool]) -> Plan:
    """The plan, refused for `reason`, with the changes `blocks` selects marked with it."""
    return dataclasses.replace(plan, refused=plan.refused or reason, changes=tuple(
        dataclasses.replace(c, blocked=c.blocked or reason) if c.applies and blocks(c) else c
        for c in plan.changes))


def guard(plan: Plan, *, owned: int, allow_empty: bool, max_prune: float, prune_container_env: bool) -> Plan:
    """Every guard's refusal marked on the plan (none: the plan as it was)."""
    reason = prune_refusal(plan, owned=owned, allow_empty=allow_empty, max_prune=max_prune)
    if reason:
        plan = refuse(plan, reason, lambda c: c.action == "delete")
    reason = environment_refusal(plan, allowed=prune_container_env)
    if reason:
        plan = refuse(plan, reason, lambda c: bool(removed_variables(c)))
    return plan
