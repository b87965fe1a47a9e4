"""Every fault switched on and off at runtime through the admin endpoint, and shown in the change log."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import regex

pytest.importorskip("openai")

from parity._exceptions import InvalidInputError
from parity.lab.faults import CORRUPTION_SNIPPETS, FaultState

UNEXPECTED = regex.compile(r"[\p{Thai}\p{Han}\p{Hiragana}]")


def session_on(lab: Any, platform: str, model: str = "S") -> str:
    """A session name the router sends to ``platform`` under the configured shares."""
    router = lab.server.router
    for i in range(1000):
        if router.pick_platform(model=model, key=f"user-{i}", faults=FaultState([])) == platform:
            return f"user-{i}"
    raise AssertionError(f"no session lands on {platform}")


def post_change(lab: Any, change: dict[str, Any]) -> dict[str, Any]:
    resp = httpx.post(f"{lab.url}/admin/changes", json=change, headers=lab.admin_headers, timeout=30)
    assert resp.status_code == 201, resp.text
    data: dict[str, Any] = resp.json()
    return data


def off(lab: Any, change_id: str, kind: str = "rollback") -> None:
    post_change(lab, {"kind": kind, "params": {"change_id": change_id}, "description": f"{kind} {change_id}"})


def complete(lab: Any, session: str, **extra: Any) -> httpx.Response:
    body = {"model": "S", "prompt": "The json module", "max_tokens": 12, "user": session, **extra}
    resp = httpx.post(f"{lab.url}/v1/completions", json=body, timeout=60)
    assert resp.status_code == 200, resp.text
    return resp


def text_of(resp: httpx.Response) -> str:
    return str(resp.json()["choices"][0]["text"])


def test_admin_needs_the_token(fault_lab: Any) -> None:
    change = {"kind": "deploy", "params": {"config_version": "x"}}
    assert httpx.post(f"{fault_lab.url}/admin/changes", json=change, timeout=10).status_code == 401
    wrong = {"authorization": "Bearer wrong"}
    resp = httpx.post(f"{fault_lab.url}/admin/changes", json=change, headers=wrong, timeout=10)
    assert resp.status_code == 401
    assert resp.json()["error"]["type"] == "authentication_error"


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"kind": "routing", "params": {"fraction": 1.5}}, "params.fraction"),
        (
            {"kind": "sampler", "scope": {"platform": "mars"}, "params": {"sampler": "approx-topk-10240"}},
            "scope.platform",
        ),
        ({"kind": "rollback", "params": {"change_id": "never-posted"}}, "params.change_id"),
        ({"kind": "warp"}, "kind"),
    ],
)
def test_bad_changes_are_400_naming_the_parameter(fault_lab: Any, change: dict[str, Any], param: str) -> None:
    resp = httpx.post(f"{fault_lab.url}/admin/changes", json=change, headers=fault_lab.admin_headers, timeout=10)
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == param


def test_routing_fault_on_and_off(fault_lab: Any) -> None:
    session = "routing-user"
    assert complete(fault_lab, session).headers["x-parity-pool"] == "short"
    change = post_change(fault_lab, {"kind": "routing", "scope": {"model": "S"}, "params": {"fraction": 1.0}})
    misrouted = [complete(fault_lab, session, max_tokens=2) for _ in range(2)]
    assert [r.headers["x-parity-pool"] for r in misrouted] == ["long", "long"]  # sticky: the follow-up too
    assert misrouted[0].headers["x-parity-server"].split("-")[1] == "long"
    other = httpx.post(
        f"{fault_lab.url}/v1/completions",
        json={"model": "O", "prompt": "x", "max_tokens": 2, "user": session},
        timeout=60,
    )
    assert other.headers["x-parity-pool"] == "short"  # the fault is scoped to model S
    off(fault_lab, change["id"], "fix")
    assert complete(fault_lab, session, max_tokens=2).headers["x-parity-pool"] == "short"


def test_corruption_fault_on_one_platform_then_rolled_back(fault_lab: Any) -> None:
    victim, bystander = session_on(fault_lab, "tpu"), session_on(fault_lab, "gpu")
    greedy = {"temperature": 0, "max_tokens": 16}
    before = text_of(complete(fault_lab, victim, **greedy))
    bystander_before = text_of(complete(fault_lab, bystander, **greedy))
    change = post_change(
        fault_lab,
        {"kind": "corruption", "scope": {"platform": "tpu"}, "params": {"fraction": 1.0, "sets": ["thai", "cjk"]}},
    )
    corrupted = complete(fault_lab, victim, **greedy)
    assert corrupted.headers["x-parity-platform"] == "tpu"
    assert UNEXPECTED.search(text_of(corrupted)), text_of(corrupted)
    assert text_of(complete(fault_lab, bystander, **greedy)) == bystander_before
    off(fault_lab, change["id"])
    assert text_of(complete(fault_lab, victim, **greedy)) == before


def test_code_corruption_injects_syntax_breaking_tokens(fault_lab: Any) -> None:
    victim = session_on(fault_lab, "trainium")
    change = post_change(
        fault_lab,
        {"kind": "corruption", "scope": {"platform": "trainium"}, "params": {"fraction": 1.0, "sets": ["code"]}},
    )
    text = text_of(complete(fault_lab, victim, temperature=0, max_tokens=16))
    off(fault_lab, change["id"])
    assert any(snippet.strip() in text for snippet in CORRUPTION_SNIPPETS["code"]), text


def test_sampler_fault_changes_seeded_samples_until_rolled_back(fault_lab: Any) -> None:
    victim = session_on(fault_lab, "tpu", model="H")

    def samples() -> list[str]:
        out = []
        for seed in range(4):
            body = {
                "model": "H",
                "prompt": "import os\nimport",
                "max_tokens": 16,
                "seed": seed,
                "top_k": 5000,
                "user": victim,
            }
            resp = httpx.post(f"{fault_lab.url}/v1/completions", json=body, timeout=60)
            assert resp.status_code == 200
            assert resp.headers["x-parity-platform"] == "tpu"
            out.append(text_of(resp))
        return out

    before = samples()
    change = post_change(
        fault_lab,
        {
            "kind": "sampler",
            "scope": {"platform": "tpu", "model": "H"},
            "params": {"sampler": "approx-topk-10240", "affected_batch_sizes": "all"},
        },
    )
    during = samples()
    off(fault_lab, change["id"])
    after = samples()
    assert after == before  # the same seeds draw the same tokens through the reference sampler again
    assert any(before)
    assert during != before  # tokens >= 10240 are gone from every top-5000 candidate set


def test_precision_fault_shifts_logprobs_of_one_server(fault_lab: Any) -> None:
    session = session_on(fault_lab, "gpu")
    first = complete(fault_lab, session, temperature=0, max_tokens=4, logprobs=1)
    server = first.headers["x-parity-server"]
    change = post_change(
        fault_lab,
        {"kind": "precision", "scope": {"server": server}, "params": {"precision": "bf16", "config_version": "bf16-1"}},
    )
    bf16 = complete(fault_lab, session, temperature=0, max_tokens=4, logprobs=1)
    assert bf16.headers["x-parity-server"] == server
    assert bf16.headers["x-parity-config-version"] == "bf16-1"
    off(fault_lab, change["id"])
    restored = complete(fault_lab, session, temperature=0, max_tokens=4, logprobs=1)
    lp = [r.json()["choices"][0]["logprobs"]["token_logprobs"][0] for r in (first, bf16, restored)]
    assert lp[0] == restored.json()["choices"][0]["logprobs"]["token_logprobs"][0]
    assert lp[1] != lp[0]
    assert restored.headers["x-parity-config-version"] != "bf16-1"


def test_load_balancing_and_deploy_are_visible(fault_lab: Any) -> None:
    sessions = [f"lb-{i}" for i in range(12)]
    rebalance = post_change(fault_lab, {"kind": "load_balancing", "params": {"shares": {"trainium": 1.0}}})
    deploy = post_change(
        fault_lab, {"kind": "deploy", "params": {"config_version": "2025-08-29.2"}, "description": "benign"}
    )
    responses = [complete(fault_lab, s, max_tokens=1) for s in sessions]
    assert {r.headers["x-parity-platform"] for r in responses} == {"trainium"}
    assert {r.headers["x-parity-config-version"] for r in responses} == {"2025-08-29.2"}
    off(fault_lab, rebalance["id"])
    off(fault_lab, deploy["id"])
    responses = [complete(fault_lab, s, max_tokens=1) for s in sessions]
    assert len({r.headers["x-parity-platform"] for r in responses}) > 1


def test_change_log_lists_every_change_and_what_is_active(fault_lab: Any) -> None:
    posted = [
        post_change(fault_lab, {"kind": "routing", "scope": {"model": "S"}, "params": {"fraction": 0.008}}),
        post_change(fault_lab, {"kind": "corruption", "scope": {"platform": "tpu"}, "params": {"fraction": 0.01}}),
        post_change(fault_lab, {"kind": "sampler", "params": {"sampler": "mixed-precision-topp"}}),
        post_change(fault_lab, {"kind": "precision", "scope": {"platform": "gpu"}, "params": {"precision": "bf16"}}),
        post_change(fault_lab, {"kind": "load_balancing", "params": {"misroute_multiplier": 20}}),
        post_change(fault_lab, {"kind": "deploy", "params": {"config_version": "z"}, "description": "final check"}),
    ]
    for change in posted[:3]:
        off(fault_lab, change["id"], "rollback")
    for change in posted[3:5]:
        off(fault_lab, change["id"], "fix")
    log = httpx.get(f"{fault_lab.url}/admin/changes", timeout=10).json()
    entries = log["changes"]
    ids = [e["id"] for e in entries]
    assert ids.index(posted[0]["id"]) < ids.index(posted[-1]["id"])
    for entry in entries:
        assert set(entry) == {"time", "id", "kind", "scope", "description", "params"}
        assert entry["time"].endswith("Z")
    assert {"routing", "corruption", "sampler", "precision", "load_balancing", "deploy", "rollback", "fix"} <= {
        e["kind"] for e in entries
    }
    assert posted[-1]["id"] in log["active"]
    assert not {c["id"] for c in posted[:-1]} & set(log["active"])
    off(fault_lab, posted[-1]["id"])


def test_a_sampler_fault_fills_emptied_rows_like_the_incident_code() -> None:
    """``where(keep, logits, -50000)`` leaves a row whose every token was dropped at one constant: a uniform draw.
    ``empty_rows="argmax"`` models a server that guards against it (the engine falls back to the raw argmax)."""
    import numpy as np

    from parity.lab.changelog import new_change
    from parity.lab.faults import sampler_filter, validate_change

    peaked = np.array([[4.0, 0.0, 0.0], [0.0, 1.0, 0.5]], dtype=np.float32)  # row 0: p(argmax) rounds up in bf16
    args = {"temperature": 1.0, "top_k": 0, "top_p": 0.9, "min_p": 0.0}
    uniform = sampler_filter(new_change("sampler", {}, {"sampler": "mixed-precision-topp"}))(peaked, **args)
    assert uniform[0].tolist() == [0.0, 0.0, 0.0]
    assert np.isfinite(uniform[1]).sum() >= 1
    assert not np.isfinite(uniform[1]).all()
    guarded = sampler_filter(new_change("sampler", {}, {"sampler": "mixed-precision-topp", "empty_rows": "argmax"}))
    assert not np.isfinite(guarded(peaked, **args)[0]).any()
    lowered = new_change("sampler", {}, {"sampler": "approx-topk-10240", "cutoff": 2, "affected_batch_sizes": "all"})
    out = sampler_filter(lowered)(np.array([[0.0, 1.0, 5.0]], dtype=np.float32), **args)
    assert not np.isfinite(out[0, 2])  # the maximum at index 2 is past the lowered cut-off
    for params, name in (({"empty_rows": "zero"}, "params.empty_rows"), ({"cutoff": 0}, "params.cutoff")):
        with pytest.raises(InvalidInputError, match=name):
            validate_change(
                new_change("sampler", {}, {"sampler": "approx-topk-10240", **params}), models={"S"}, platforms={"gpu"}
            )
