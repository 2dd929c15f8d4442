"""A story told on several kernel profiles: `setup(profiles=...)` and `per_profile(...)`.

The loader: the profiles and the default (the first), and one ScenarioError line with
file and line for an unknown profile, a profile a `per_profile` names that the story is
not told on, both `profile=` and `profiles=`, a profile twice, and non-bytes for
`expect_data`. How a run resolves a value (either kind inside the other). Through the
command line: a bad `per_profile` exits 2 before mounting; a scenario's expectations are
judged on the profile played, so a wrong one fails on that profile only.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from fusefs.scenario.language import (
    MISSING,
    Per,
    ScenarioError,
    load_file,
    per,
    per_profile,
    resolve,
)

from .conftest import cli

POKE = '''"""A forced write to a read-only shared mapping, on two kernels."""
from fusefs.scenario import *

setup(policies="reserve", profiles=("modern", "2.6.18"))
create("/f", pages=1)
m = mmap(spawn("debuggee"), "/f", prot="r")
poke(m, page=0, data=b"z", name="poke")
mount()
expect("poke", per_profile(modern="EFAULT", default="ok"))
expect_data("/f", 0, per_profile({"2.6.18": b"\\0"}, modern=b"\\0"))
'''


def test_profiles_are_told_the_first_is_the_default(scenario_file: Callable[..., str]) -> None:
    scenario = load_file(scenario_file(POKE))
    assert scenario.profiles == ("modern", "2.6.18")
    assert scenario.profile == "modern"
    one = POKE.replace('profiles=("modern", "2.6.18")', 'profile="2.6.18"')
    one = one.replace('per_profile(modern="EFAULT", default="ok")', '"ok"')
    one = one.replace('per_profile({"2.6.18": b"\\0"}, modern=b"\\0")', 'b"\\0"')
    scenario = load_file(scenario_file(one))
    assert (scenario.profile, scenario.profiles) == ("2.6.18", ("2.6.18",))
    scenario = load_file(scenario_file(one.replace(', profile="2.6.18"', "")))
    assert (scenario.profile, scenario.profiles) == ("modern", ("modern",))


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("modern=", "modrn=", ":9: unknown kernel profile 'modrn' (known: "),
        ('{"2.6.18":', '{"2.6.81":', ":10: unknown kernel profile '2.6.81'"),
        ('per_profile(modern="EFAULT"', 'per_profile(draft="EFAULT"',
         ":9: per_profile names 'draft', a kernel profile this story is not told on "
         "(it is told on modern, 2.6.18"),
        ('profiles=("modern", "2.6.18")', 'profiles=("modern", "2.4")',
         ":4: unknown kernel profile '2.4'"),
        ('profiles=("modern", "2.6.18")', 'profile="modern", profiles=("modern", "2.6.18")',
         ":4: give profile= (one kernel profile) or profiles= (several), not both"),
        ('profiles=("modern", "2.6.18")', 'profiles=("modern", "modern")',
         ":4: profiles=('modern', 'modern') names a profile twice"),
        ('profiles=("modern", "2.6.18")', "profiles=()", ":4: profiles=() names no kernel"),
        ('modern=b"\\0"))', 'modern="0"))', ":10: expect_data wants bytes (or per(...) or "
         "per_profile(...) of bytes)"),
    ],
)  # fmt: skip
def test_bad_profiles_are_one_error_with_file_and_line(
    scenario_file: Callable[..., str], old: str, new: str, message: str
) -> None:
    text = POKE.replace(old, new)
    assert text != POKE
    path = scenario_file(text)
    with pytest.raises(ScenarioError) as caught:
        load_file(path)
    assert str(caught.value).startswith(path + message), str(caught.value)
    assert "\n" not in str(caught.value)


def test_per_profile_outside_a_story_is_refused() -> None:
    with pytest.raises(RuntimeError, match="only valid while a scenario file loads"):
        per_profile(modern=1)


def test_resolve_takes_policy_and_profile_either_inside_the_other() -> None:
    by_profile = Per({"modern": per(reserve="sigbus", default="ok"), "legacy": "ok"}, of="profile")
    assert resolve(by_profile, policy="reserve", profile="modern") == "sigbus"
    assert resolve(by_profile, policy="fuse", profile="modern") == "ok"
    assert resolve(by_profile, policy="reserve", profile="legacy") == "ok"
    assert resolve(by_profile, policy="reserve", profile="draft") is MISSING  # not checked
    by_policy = per(reserve=Per({"2.6.18": 1}, default=0, of="profile"))
    assert resolve(by_policy, policy="reserve", profile="2.6.18") == 1
    assert resolve(by_policy, policy="reserve", profile="modern") == 0
    assert resolve(by_policy, policy="fuse", profile="modern") is MISSING
    bounds = (Per({"modern": 1.0}, default=0.0, of="profile"), float("inf"))  # expect_took's
    assert resolve(bounds, policy="reserve", profile="modern") == (1.0, float("inf"))
    assert resolve("ok", policy="reserve", profile="modern") == "ok"


def test_a_bad_per_profile_exits_2_before_mounting(scenario_file: Callable[..., str]) -> None:
    path = scenario_file(POKE.replace("modern=", "modrn="))
    result = cli("scenario", "run", path, "--profile", "2.6.18")
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"mkwritefs scenario: {path}:9: unknown kernel profile 'modrn'")


@pytest.mark.mount
def test_each_profile_is_judged_by_its_own_expectation(scenario_file: Callable[..., str]) -> None:
    path = scenario_file(POKE)
    for profile in ("modern", "2.6.18"):
        result = cli("scenario", "run", path, "--profile", profile)
        assert result.returncode == 0, result.stdout + result.stderr
    default = cli("scenario", "run", path)  # the first profile, and says so
    assert default.returncode == 0
    assert "told on the kernel profiles modern, 2.6.18: playing modern" in default.stderr
    wrong = scenario_file(POKE.replace('modern="EFAULT"', 'modern="ok"'), name="wrong.py")
    assert cli("scenario", "run", wrong, "--profile", "2.6.18").returncode == 0
    failed = cli("scenario", "run", wrong, "--profile", "modern")
    assert failed.returncode == 1
    assert "poke: outcome" in failed.stdout
    assert "expected 'ok', got 'EFAULT'" in failed.stdout
