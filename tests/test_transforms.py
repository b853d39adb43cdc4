"""Client update transforms: spec grammar, registry, chain order, public flag, faults, the mod."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.supercore.task_identity import TaskIdentity

import fl_sim.federation.transforms.faults as fault_mod
from fl_sim.data.config import DataConfig
from fl_sim.federation.client_app import app as client_app
from fl_sim.federation.config import FederationConfig
from fl_sim.federation.run_config import RunConfig
from fl_sim.federation.task import public_info
from fl_sim.federation.transforms import (
    TRANSFORMS,
    Transform,
    TransformChain,
    TransformContext,
    Update,
    parse_fault_spec,
    update_chain,
)
from fl_sim.federation.transforms.mod import update_transforms_mod
from models.public import PublicInfo, TransformSpec, model_for

CTX = TransformContext(partition_id=1, num_partitions=4, server_round=1, round_timeout=3.0)


@dataclass(frozen=True)
class Scale(Transform):
    """Test transform: a published defence that multiplies the update."""

    public = True
    factor: float = 2.0

    def __call__(self, update: Update, ctx: TransformContext) -> Update:
        return {k: v * self.factor for k, v in update.items()}


@dataclass(frozen=True)
class Shift(Transform):
    """Test transform: a private one that adds a constant (required parameter, int)."""

    public = False
    by: int
    tag: str = "x"
    flag: bool = False

    def __call__(self, update: Update, ctx: TransformContext) -> Update:
        return {k: v + self.by for k, v in update.items()}


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Adding a transform is one registry line."""
    monkeypatch.setitem(TRANSFORMS, "scale", Scale)
    monkeypatch.setitem(TRANSFORMS, "shift", Shift)
    yield


def ones() -> Update:
    return {"a": torch.ones(2, 3), "b": torch.ones(4)}


# --- spec grammar (shared with the attacker: models.public) ----------------------------------


@pytest.mark.parametrize("text", ["nan@1", "topk:fraction=0.1", "dp:clip=1.0:sigma=1e-3@12", "x"])
def test_spec_round_trips(text: str) -> None:
    assert str(TransformSpec.parse(text)) == text


def test_spec_parts() -> None:
    spec = TransformSpec.parse("dp:clip=1.0:sigma=0.5@3")
    assert (spec.name, spec.params, spec.partition) == (
        "dp",
        (("clip", "1.0"), ("sigma", "0.5")),
        3,
    )
    assert TransformSpec.parse("nan").partition is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nan@", "is not NAME"),
        ("nan:x", "is not NAME"),
        ("Nan", "is not NAME"),
        ("a@1@2", "is not NAME"),
        ("", "is not NAME"),
        ("a:b=1:b=2", "repeats a parameter"),
    ],
)
def test_bad_specs_are_named(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TransformSpec.parse(text)


# --- registry and parameters -----------------------------------------------------------------


def test_every_registered_transform_declares_public() -> None:
    assert set(TRANSFORMS) >= {"nan", "shape", "error", "timeout"}
    for cls in TRANSFORMS.values():
        assert isinstance(cls.__dict__["public"], bool)
    assert not any(TRANSFORMS[k].public for k in ("nan", "shape", "error", "timeout"))


def test_a_transform_must_declare_public() -> None:
    with pytest.raises(TypeError, match="must declare public"):

        @dataclass(frozen=True)
        class Undeclared(Transform):
            pass

    with pytest.raises(TypeError, match="without an annotation"):

        @dataclass(frozen=True)
        class Annotated(Transform):
            public: bool = True


def test_parameters_are_typed_and_canonical(registered: None) -> None:
    (step,) = TransformChain.parse(["shift:by=3:flag=true@2"]).steps
    assert step.transform == Shift(by=3, flag=True)
    assert str(step.spec) == "shift:by=3:tag=x:flag=true@2"  # every parameter spelled out
    assert str(TransformChain.parse(["scale"]).steps[0].spec) == "scale:factor=2.0"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "zzz",
            r"transforms: unknown transform 'zzz' in 'zzz'; valid: dp, error, nan, prune, quant, "
            r"scale, shape",
        ),
        ("shift", r"transforms: transform 'shift': missing parameter\(s\) by"),
        ("shift:by=1.5", r"parameter by: cannot read '1.5' as int"),
        ("shift:by=1:flag=maybe", r"parameter flag: cannot read 'maybe' as bool"),
        ("scale:f=2", r"unknown parameter\(s\) f; parameters: factor"),
        ("scale@x", r"transforms: transform spec 'scale@x' is not NAME"),
    ],
)
def test_config_rejects_bad_transforms(registered: None, spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RunConfig.of(transforms=(spec,))
    with pytest.raises(ValueError, match=message):
        RunConfig.load(overrides=[f"transforms={spec}"])


# --- the chain -------------------------------------------------------------------------------


def test_chain_applies_in_order(registered: None) -> None:
    first = TransformChain.parse(["scale:factor=3", "shift:by=1"])(ones(), CTX)
    second = TransformChain.parse(["shift:by=1", "scale:factor=3"])(ones(), CTX)
    assert torch.all(first["a"] == 4) and torch.all(second["a"] == 6)


def test_chain_leaves_the_input_unchanged(registered: None) -> None:
    update = ones()
    TransformChain.parse(["scale", "shift:by=1", "nan", "shape"])(update, CTX)
    assert all(torch.equal(v, ones()[k]) for k, v in update.items())


def test_partition_limits_a_step(registered: None) -> None:
    chain = TransformChain.parse(["scale:factor=3@1", "shift:by=1@2"])
    assert torch.all(chain(ones(), CTX)["a"] == 3)  # partition 1
    other = dataclasses.replace(CTX, partition_id=2)
    assert torch.all(chain(ones(), other)["a"] == 2)
    assert len(chain.for_partition(0)) == 0 and len(chain.for_partition(2)) == 1


def test_only_public_transforms_are_exposed(registered: None) -> None:
    chain = update_chain(["shift:by=1", "scale:factor=0.5@2", "nan"], faults=["error@3"])
    assert chain.public_specs == ("scale:factor=0.5@2",)
    assert [str(s.spec) for s in chain.steps] == [
        "shift:by=1:tag=x:flag=false",
        "scale:factor=0.5@2",
        "nan",
        "error@3",  # faults come last
    ]


def test_public_info_carries_public_transforms(registered: None) -> None:
    cfg = RunConfig.of(transforms=("shift:by=1", "scale:factor=0.5"), faults=("nan@1",))
    public = public_info(cfg.federation, cfg.data, "ann")
    assert public.transforms == ("scale:factor=0.5",)
    assert public_info(FederationConfig(faults=("nan@1",)), DataConfig(), "ann").transforms == ()
    # what an attacker can do with them: parse them back
    assert TransformSpec.parse(public.transforms[0]).params == (("factor", "0.5"),)
    with pytest.raises(ValueError, match="is not NAME"):
        dataclasses.replace(public, transforms=("bad spec",))
    assert PublicInfo("lenet", (1, 28, 28), 10, 1, transforms=["nan@1"]).transforms == ("nan@1",)


# --- faults, as transforms: the ``faults`` key keeps its meaning --------------------------------


def test_fault_spec_semantics_unchanged() -> None:
    assert parse_fault_spec(["nan@1", "shape@2", "error@3", "timeout@0"]) == {
        1: "nan",
        2: "shape",
        3: "error",
        0: "timeout",
    }
    assert parse_fault_spec(["nan@1", "shape@1"]) == {1: "shape"}  # the last one wins
    for bad in ("nan", "boom@1", "nan@x"):
        with pytest.raises(ValueError, match="faults: fault .* is not KIND@PARTITION"):
            RunConfig.of(faults=(bad,))


def test_faults_corrupt_the_update_of_their_partition(monkeypatch: pytest.MonkeyPatch) -> None:
    chain = update_chain([], ["nan@1", "shape@2", "error@3", "timeout@0"])
    at = {p: dataclasses.replace(CTX, partition_id=p) for p in range(5)}
    nan = chain(ones(), at[1])
    assert torch.isnan(nan["a"]).all() and torch.equal(nan["b"], torch.ones(4))
    shape = chain(ones(), at[2])
    assert shape["a"].shape == (5,) and torch.equal(shape["b"], torch.ones(4))
    with pytest.raises(RuntimeError, match="injected client failure"):
        chain(ones(), at[3])
    slept: list[float] = []
    monkeypatch.setattr(fault_mod.time, "sleep", slept.append)
    assert torch.equal(chain(ones(), at[0])["a"], torch.ones(2, 3)) and slept == [5.0]
    assert chain(ones(), at[4]).keys() == ones().keys()  # no fault there


# --- the Flower mod ----------------------------------------------------------------------------


def call(
    app: ClientApp, cfg: RunConfig, partition: int, arrays: ArrayRecord | None = None
) -> Message:
    """Deliver one train message (global model ``arrays``) to ``app`` as partition
    ``partition`` of 2."""
    ctx = Context(
        run_id=1,
        node_id=100 + partition,
        node_config={"partition-id": partition, "num-partitions": 2},
        state=RecordDict(),
        run_config=cfg.to_flower(),
    )
    content = RecordDict({"config": ConfigRecord({"server-round": 1, "arm": "ann"})})
    if arrays is not None:
        content["arrays"] = arrays
    return app(Message(content, dst_node_id=100 + partition, message_type="train"), ctx)


@pytest.fixture
def task_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """What Flower's runtime sets in a ClientApp process (Message() needs it)."""
    monkeypatch.setattr(TaskIdentity, "_run_id", 1)
    monkeypatch.setattr(TaskIdentity, "_node_id", 0)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)


def echo_app() -> ClientApp:
    app = ClientApp()

    @app.train(mods=[update_transforms_mod])
    def train(msg: Message, context: Context) -> Message:
        content = RecordDict(
            {"arrays": ArrayRecord(ones()), "metrics": MetricRecord({"num-examples": 1})}
        )
        return Message(content, reply_to=msg)

    return app


def test_mod_transforms_the_reply(registered: None, task_identity: None) -> None:
    cfg = RunConfig.of(transforms=("scale:factor=3", "shift:by=1@1"))
    app = echo_app()
    zero = call(app, cfg, 0).content
    assert torch.all(zero["arrays"].to_torch_state_dict()["a"] == 3)
    one = call(app, cfg, 1).content
    assert torch.all(one["arrays"].to_torch_state_dict()["b"] == 4)
    assert list(one.keys()) == ["arrays", "metrics"] and one["metrics"]["num-examples"] == 1


def test_mod_leaves_untransformed_replies_alone(task_identity: None) -> None:
    reply = call(echo_app(), RunConfig.of(faults=("nan@1",)), 0)
    assert torch.equal(reply.content["arrays"].to_torch_state_dict()["a"], torch.ones(2, 3))


def test_client_app_injects_faults_through_the_mod(task_identity: None) -> None:
    cfg = RunConfig.of(clients=2, faults=("nan@1",))
    torch.manual_seed(0)
    arrays = ArrayRecord(model_for(public_info(cfg.federation, cfg.data, "ann")).state_dict())

    def update(cfg: RunConfig, partition: int) -> Update:
        return call(client_app, cfg, partition, arrays).content["arrays"].to_torch_state_dict()

    clean, sound, faulty = update(RunConfig.of(clients=2), 1), update(cfg, 0), update(cfg, 1)
    first, *rest = clean
    assert torch.isnan(faulty[first]).all() and not torch.isnan(sound[first]).any()
    assert all(torch.equal(faulty[k], clean[k]) for k in rest)
    with pytest.raises(RuntimeError, match="injected client failure"):
        update(RunConfig.of(clients=2, faults=("error@0",)), 0)
