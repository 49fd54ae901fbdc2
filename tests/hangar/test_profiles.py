"""Profiles: which entries and tools one client holds."""

from __future__ import annotations

from hangar.config import ProfileSpec
from hangar.profiles import Profile
from workers.errors import ErrorType


def test_a_profile_holds_its_providers_tools_within_its_globs() -> None:
    ops = Profile(
        ProfileSpec("ops", providers=("time", "pool"), exclude_tools=("*__convert_*", "hangar_stop"))
    )
    assert ops.holds_tool("time", "time__get_current_time")
    assert not ops.holds_tool("time", "time__convert_time")
    assert not ops.holds_tool("everything", "everything__echo")
    assert ops.holds_tool(None, "hangar_call") and not ops.holds_tool(None, "hangar_stop")
    assert ops.entries(["time", "everything", "pool"]) == ["time", "pool"]


def test_a_profile_without_providers_holds_every_one() -> None:
    everything = Profile(ProfileSpec("all", include_tools=("*__echo",)))
    assert everything.holds_entry("anything")
    assert everything.holds_tool("fx", "fx__echo") and not everything.holds_tool("fx", "fx__sleep")


def test_a_refusal_names_the_profile() -> None:
    refusal = Profile(ProfileSpec("ops")).refusal("tool 'x__y'")
    assert refusal.type is ErrorType.NOT_IN_PROFILE
    assert refusal.message == "tool 'x__y' is not in profile 'ops'"
