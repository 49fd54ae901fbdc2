"""One request on its way to a provider: rate limits, group balancing, failover, retries, figures.

`Caller.call` sends a client's request (a tool call, a read, a prompt, a completion) to its
provider, or, for a group, to the member the balancer picks among those that can take it. Each
attempt first takes a token of its provider's (and the group's) rate limit
(`hangar.call_limits`): refused at once, or for a call that may `queue`, waited for within its
timeout. A request that could not reach a member (worker restarting, breaker open, provider not
ready, over the member's limit) goes to another member at once; one that reached a provider is
tried again only as the retry policy or the batch says (`hangar.retry`). Its outcome and time
are counted for `/metrics`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from hangar.call_audit import CallAudit, who_var
from hangar.call_limits import CallLimits
from hangar.dispatch import REPLY_MARGIN_S, Dispatcher, Reply
from hangar.figures import RouterFigures
from hangar.groups import Group
from hangar.retry import delay_s, may_retry
from supervisors import logs
from workers import tracing
from workers.errors import NEVER_REACHED, CallError, ErrorType
from workers.protocol import Era
from workers.spec import ProviderSpec, RetrySpec

log = structlog.get_logger("hangar.calls")

ProgressFn = Callable[[dict[str, Any]], None] | None
WaitFn = Callable[[float], None] | None  # told the seconds a call waited for a rate limit's token


class Caller:
    def __init__(
        self,
        dispatcher: Dispatcher,
        specs: Mapping[str, ProviderSpec],
        groups: Mapping[str, Group],
        figures: RouterFigures,
    ) -> None:
        self.dispatcher = dispatcher
        self.specs = specs
        self.groups = groups
        self.figures = figures
        self.limits = CallLimits(specs.values(), (group.spec for group in groups.values()))
        self.audit: CallAudit | None = None  # set when calls are audited (`audit.calls`)

    def default_timeout_s(self, entry: str) -> float:
        group = self.groups.get(entry)
        spec = group.members[0] if group else self.specs[entry]
        return spec.call_timeout_s

    def retry_policy(self, entry: str) -> RetrySpec:
        group = self.groups.get(entry)
        return group.spec.retry if group else self.specs[entry].retry

    async def call(
        self,
        entry: str,
        method: str,
        params: bytes | None,
        *,
        era: Era,
        timeout_s: float | None = None,
        label: str = "",
        on_progress: ProgressFn = None,
        batch_retries: int | None = None,
        call: int | None = None,
        queue: bool = False,
        on_wait: WaitFn = None,
        **fields: Any,
    ) -> tuple[Reply, int]:
        """The provider's answer and the number of attempts it took.

        `queue`: over a rate limit, wait for a token within the timeout (told to `on_wait`)
        instead of failing at once; the time waited counts against the timeout.

        Raises:
            CallError: with `attempts` set, when no attempt produced an answer.
        """
        timeout = timeout_s if timeout_s is not None else self.default_timeout_s(entry)
        group = self.groups.get(entry)
        admission = _Admission(self.limits, timeout, queue, on_wait)
        if group is not None and self.limits.limits_group(entry):
            await admission.enter(group=entry)
        if group is None and batch_retries is None and not self.specs[entry].retry.retry_on:
            reply = await self._once(entry, method, params, era, admission, label, on_progress, call, fields)
            return reply, 1
        return await self._with_retries(
            entry, group, method, params, era, admission, label, on_progress, batch_retries, call, fields
        )

    async def _with_retries(
        self,
        entry: str,
        group: Group | None,
        method: str,
        params: bytes | None,
        era: Era,
        admission: _Admission,
        label: str,
        on_progress: ProgressFn,
        batch_retries: int | None,
        call: int | None,
        fields: dict[str, Any],
    ) -> tuple[Reply, int]:
        policy = self.retry_policy(entry)
        max_attempts = batch_retries + 1 if batch_retries is not None else policy.max_attempts
        attempts = retries = 0
        tried: set[str] = set()  # members that could not take this call
        limited: CallError | None = None  # the last member over its own rate limit
        views = self.dispatcher.providers
        while True:
            target = entry
            if group is not None:
                member = group.pick(views, self._in_flight(group), exclude=tried)
                if member is None and limited is not None:
                    limited.attempts = attempts
                    raise limited  # every member that could take it is over its limit: say when to retry
                if member is None:
                    error = CallError(
                        ErrorType.NO_MEMBER_AVAILABLE,
                        f"no member of group {group.id} can take calls now "
                        f"({group.healthy(views)} healthy of {len(group.members)})",
                        "see hangar_list for the members' states; calls go through again as they recover",
                    )
                    error.attempts = attempts
                    raise error
                target = member
                fields = {**fields, "failover": True}
            attempts += 1
            try:
                reply = await self._once(
                    target, method, params, era, admission, label, on_progress, call, fields
                )
            except CallError as exc:
                exc.attempts = attempts
                if group is not None and exc.type in NEVER_REACHED:
                    if exc.type is ErrorType.RATE_LIMITED:
                        limited = exc
                    tried.add(target)  # the call never reached this member: another one takes it now
                    log.info("call_failover", group=group.id, member=target, error=str(exc.type))
                    continue
                if retries + 1 >= max_attempts or not may_retry(
                    str(exc.type), policy, batch_retries=batch_retries is not None
                ):
                    raise
                retries += 1
                tried.clear()
                if group is not None:
                    tried.add(target)  # prefer another member for the retry
                wait_s = delay_s(policy, retries)
                log.info("call_retry", provider=entry, error=str(exc.type), attempt=attempts + 1)
                await asyncio.sleep(wait_s)
                continue
            if (
                "tool_error" in policy.retry_on
                and retries + 1 < max_attempts
                and not reply.rpc_error
                and b'"isError":true' in reply.body
            ):
                retries += 1
                await asyncio.sleep(delay_s(policy, retries))
                continue
            return reply, attempts

    def _in_flight(self, group: Group) -> dict[str, int]:
        return {m.id: self.dispatcher.in_flight(m.id) for m in group.members}

    async def _once(
        self,
        target: str,
        method: str,
        params: bytes | None,
        era: Era,
        admission: _Admission,
        label: str,
        on_progress: ProgressFn,
        call: int | None,
        fields: dict[str, Any],
    ) -> Reply:
        if self.limits.limits(target):
            await admission.enter(provider=target)
        timeout_s = admission.remaining_s()
        started = time.perf_counter()
        outcome = "ok"
        if tracing.tracer is not None:
            fields = {**fields, "tp": tracing.traceparent()}
        try:
            # the worker times the call itself, from when its provider is up; the router's
            # deadline is only a backstop, so it allows for a cold start first
            backstop_s = timeout_s + self.specs[target].startup_timeout_s + REPLY_MARGIN_S
            reply = await self.dispatcher.request(
                target,
                method,
                params,
                era=era,
                timeout_s=timeout_s,
                backstop_s=backstop_s,
                call=call,
                on_progress=on_progress,
                **fields,
            )
            if reply.rpc_error:
                outcome = "rpc_error"
            elif method == "tools/call" and b'"isError":true' in reply.body:
                outcome = "tool_error"
            return reply
        except CallError as exc:
            outcome = str(exc.type)
            log.info("call_failed", provider=target, method=method, name=label, error=outcome)
            raise
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            elapsed_s = time.perf_counter() - started
            self.figures.record(target, method, label, outcome, elapsed_s)
            if self.audit is not None:
                self.audit.record(
                    who=who_var.get(),
                    provider=target,
                    method=method,
                    name=label,
                    outcome=outcome,
                    elapsed_s=elapsed_s,
                    params=params,
                    correlation_id=fields.get("cid"),
                )
            if logs.verbosity.debug:
                log.debug("call_done", provider=target, method=method, name=label, outcome=outcome)


class _Admission:
    """One call's way past the rate limits: whether it may wait, and what is left of its timeout."""

    def __init__(self, limits: CallLimits, timeout_s: float, queue: bool, on_wait: WaitFn) -> None:
        self._limits = limits
        self._timeout_s = timeout_s
        self._queue = queue
        self._on_wait = on_wait
        self._waited_s = 0.0

    def remaining_s(self) -> float:
        """The call's timeout less what it waited for tokens."""
        return self._timeout_s - self._waited_s

    async def enter(self, *, provider: str | None = None, group: str | None = None) -> None:
        """Take a token of the provider's or group's limit, waiting for it if the call may."""
        wait_up_to_s = self.remaining_s() if self._queue else None
        if group is not None:
            waited_s = await self._limits.admit_group(group, wait_up_to_s=wait_up_to_s)
        else:
            assert provider is not None
            waited_s = await self._limits.admit(provider, wait_up_to_s=wait_up_to_s)
        if waited_s:
            self._waited_s += waited_s
            if self._on_wait is not None:
                self._on_wait(waited_s)
