"""What the root sees happen in its tree, written down: the audit trail, the logbook, the figures.

The root hands every event of its supervisors here. Only the events of the router and of
the workers (one level below each provider's supervisor) are about something an operator
knows by name; a provider's own supervisor matters when it gives up on its worker.
"""

from __future__ import annotations

from typing import Any

from hangar.audit import AuditTrail
from hangar.logbook import Logbook
from hangar.provider_tree import GAVE_UP
from hangar.tree import PROVIDERS_ID, ROUTER_ID


class Observer:
    def __init__(self, audit: AuditTrail, logbook: Logbook) -> None:
        self.audit = audit
        self.logbook = logbook
        self._seen: dict[str, tuple[Any, Any, int]] = {}  # provider -> (state, breaker, crashes) last seen
        self.figures: dict[str, Any] = {"children": {}, "escalations": 0}  # the router shows them on /metrics

    def count(self, child_id: str, event: str, fields: dict[str, Any]) -> None:
        """The supervisor figures: restarts and exits of the root's children, escalations."""
        if event == "escalated":
            self.figures["escalations"] += 1
            return
        if tuple(fields.get("supervisor") or ()) == (PROVIDERS_ID,):
            return  # a provider's supervisor: counted by its worker's rows
        child = self.figures["children"].setdefault(child_id, {"restarts": 0, "exits": {}})
        if event == "restart":
            child["restarts"] += 1
        else:
            reason = str(fields.get("reason"))
            child["exits"][reason] = child["exits"].get(reason, 0) + 1

    def observe(self, child_id: str, event: str, fields: dict[str, Any]) -> None:
        path = tuple(fields.get("supervisor") or ())
        if path == (PROVIDERS_ID,):  # a provider's supervisor
            detail = str(fields.get("detail") or "")
            if event == "exit" and detail.startswith(GAVE_UP):
                self.audit.record("supervisor_gave_up", id=child_id, detail=detail)
                self.logbook.add(child_id, f"gave up on the worker: {detail}", level="error", event="dead")
            return
        if path == (PROVIDERS_ID, child_id):
            kind = "worker"
        elif child_id == ROUTER_ID and not path:
            kind = "router"
        else:
            if event == "escalated":
                self.audit.record("supervisor_gave_up", id=child_id, reason=fields.get("reason"))
            return
        if event == "ready":
            self.audit.record(f"{kind}_started", id=child_id, pid=fields.get("pid"))
            self.logbook.add(child_id, f"{kind} started (pid {fields.get('pid')})", event="started")
        elif event == "exit":
            self._seen.pop(child_id, None)
            reason, why = fields.get("reason"), fields.get("detail")
            name = f"{kind}_crashed" if reason == "abnormal" else f"{kind}_exited"
            self.audit.record(name, id=child_id, pid=fields.get("pid"), reason=reason, detail=why)
            level = "warning" if reason == "abnormal" else "info"
            self.logbook.add(child_id, f"{kind} exited: {reason} ({why})", level=level, event="exited")
        elif event == "restart":
            self.audit.record(f"{kind}_restarted", id=child_id)
            self.logbook.add(child_id, f"{kind} restarted by the supervisor", event="restarted")
        elif event == "escalated":
            self.audit.record("supervisor_gave_up", id=child_id, reason=fields.get("reason"))
        elif event == "status" and kind == "worker" and isinstance(fields.get("status"), dict):
            self._observe_status(child_id, fields["status"])

    def _observe_status(self, provider: str, status: dict[str, Any]) -> None:
        state, breaker = status.get("state"), status.get("breaker")
        crashes = int((status.get("figures") or {}).get("crashes", 0))
        before = self._seen.get(provider)
        self._seen[provider] = (state, breaker, crashes)
        if before is None:
            return
        if state != before[0]:
            reason = status.get("reason")
            self.audit.record(
                "provider_state", provider=provider, **{"from": before[0], "to": state}, reason=reason
            )
            self.logbook.add(provider, f"{before[0]} -> {state} ({reason})", event="state")
        if breaker != before[1]:
            self.audit.record("breaker", provider=provider, **{"from": before[1], "to": breaker})
            self.logbook.add(
                provider, f"circuit breaker {before[1]} -> {breaker}", level="warning", event="breaker"
            )
        if crashes > before[2]:
            self.audit.record("provider_crashed", provider=provider, error=status.get("last_error"))
