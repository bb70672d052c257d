"""Pipeline parallelism without a cluster: the 1F1B schedule (pure Python), the layer split, and the
config errors of parallel.pp / pp_layers / micro_batches (each naming its key)."""

from __future__ import annotations

import pytest

from mft.config import load_config
from mft.errors import MftError
from mft.parallel.pipeline_config import check_config, stage_layers
from mft.parallel.pipeline_schedule import Compute, Exchange, max_in_flight, one_f_one_b, simulate


def _compact(program):
    out = []
    for ins in program:
        if isinstance(ins, Compute):
            out.append(f"{ins.kind}{ins.micro}")
        else:
            send = f"{ins.send[0][0]}{ins.send[1]}" if ins.send else "-"
            recv = f"{ins.recv[0][0]}{ins.recv[1]}" if ins.recv else "-"
            out.append(f"{ins.side}:{send}>{recv}")
    return out


def test_two_stages_four_micro_batches_is_megatrons_1f1b():
    # stage 0: one warm-up forward, then forward / backward pairs, one cool-down backward
    assert _compact(one_f_one_b(2, 4, 0)) == [
        "F0", "next:a0>-", "F1", "next:a1>g0", "B0", "F2", "next:a2>g1", "B1", "F3", "next:a3>g2", "B2", "next:->g3", "B3"]
    # the last stage: no warm-up; each forward is followed by its backward
    assert _compact(one_f_one_b(2, 4, 1)) == [
        "prev:->a0", "F0", "B0", "prev:g0>a1", "F1", "B1", "prev:g1>a2", "F2", "B2", "prev:g2>a3", "F3", "B3", "prev:g3>-"]


@pytest.mark.parametrize("stages", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("micro", [1, 2, 3, 4, 7, 8])
def test_every_shape_runs_without_deadlock_and_in_1f1b_order(stages, micro):
    events = simulate(stages, micro)  # raises on deadlock, mismatched exchanges or a missing input
    for s in range(stages):
        prog = one_f_one_b(stages, micro, s)
        computes = [i for i in prog if isinstance(i, Compute)]
        assert [i.micro for i in computes if i.kind == "F"] == list(range(micro))
        assert [i.micro for i in computes if i.kind == "B"] == list(range(micro))  # backwards in order too
        warmup = min(stages - s - 1, micro)
        assert [i.kind for i in computes[:warmup]] == ["F"] * warmup
        # at most stages - s micro-batches in flight: what bounds the activations a stage keeps
        assert max_in_flight(prog) == min(stages - s, micro)
        sides = {i.side for i in prog if isinstance(i, Exchange)}
        assert sides == ({"prev"} if s else set()) | ({"next"} if s < stages - 1 else set())
    assert len([e for e in events if isinstance(e[1], Compute)]) == 2 * stages * micro


def test_simulate_catches_a_broken_program():
    programs = [one_f_one_b(2, 2, 0), one_f_one_b(2, 2, 1)]
    programs[1] = [programs[1][1]] + programs[1][2:]  # stage 1 forwards before receiving its activation
    with pytest.raises(MftError, match="forward 0 before its activation"):
        simulate(2, 2, programs)
    swapped = [one_f_one_b(2, 2, 0), list(reversed(one_f_one_b(2, 2, 1)))]
    with pytest.raises(MftError):
        simulate(2, 2, swapped)


def test_stage_layers_split():
    assert stage_layers(4, 2) == [(0, 2), (2, 4)]
    assert stage_layers(5, 2) == [(0, 3), (3, 5)]  # the remainder on the earlier stages
    assert stage_layers(3, 2, [1, 2]) == [(0, 1), (1, 3)]
    with pytest.raises(MftError, match=r"parallel.pp_layers=\[1, 1\] sums to 2, but the model has 3 layers"):
        stage_layers(3, 2, [1, 1])
    with pytest.raises(MftError, match=r"parallel.pp_layers=\[3\]: expected a list of 2 integers"):
        stage_layers(3, 2, [3])
    with pytest.raises(MftError, match=r"parallel.pp_layers=\[0, 3\]: every stage needs at least one layer"):
        stage_layers(3, 2, [0, 3])
    with pytest.raises(MftError, match=r"parallel.pp=4: the model has only 2 layers"):
        stage_layers(2, 4)


@pytest.fixture()
def recipe(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(
        f"run: {{output_dir: {tmp_path / 'out'}}}\n"
        "tokenizer: {path: tok.json}\ndata: {prefix: d, seq_len: 32}\n"
        "model: {hidden_size: 32, intermediate_size: 64, num_layers: 3, num_heads: 4}\n"
        "train: {steps: 2, micro_batch_size: 2, grad_accum_steps: 4}\n"
    )
    return str(path)


@pytest.mark.parametrize("overrides, message", [
    (["parallel.pp=2", "parallel.pp_layers=[1, 1]"], r"parallel.pp_layers=\[1, 1\] sums to 2, but the model has 3 layers \(model.num_layers\)"),
    (["parallel.pp=2", "parallel.pp_layers=[1, 1, 1]"], r"parallel.pp_layers=\[1, 1, 1\]: expected a list of 2 integers"),
    (["parallel.pp_layers=[3]", "parallel.pp=1", "model.num_layers=4"], r"parallel.pp_layers=\[3\] is set but parallel.pp=1"),
    (["parallel.pp=2", "parallel.micro_batches=8"], r"parallel.micro_batches=8 must equal train.grad_accum_steps=4"),
    (["parallel.pp=2", "parallel.micro_batches=0"], r"parallel.micro_batches must be an integer >= 1"),
    (["parallel.pp=4"], r"parallel.pp=4: the model has only 3 layers \(model.num_layers\)"),
    (["parallel.pp=2", "parallel.tp=2", "parallel.sp=true"], r"parallel.sp is not supported with parallel.pp=2"),
    (["parallel.pp=2", "finetune.method=lora"], r"finetune.method=lora is not supported with parallel.pp=2"),
    (["parallel.pp=2", "parallel.dp=2", "parallel.zero=1"], r"parallel.zero=1 is not supported with parallel.pp=2"),
    (["parallel.pp=2", "train.precision=fp16"], r"train.precision=fp16 is not supported with parallel.pp=2"),
    (["parallel.pp=2", "monitor.eval_every=5", "data.split=98,2,0"], r"monitor.eval_every=5 is not supported with parallel.pp=2"),
])  # fmt: skip
def test_config_errors_name_the_key(recipe, overrides, message):
    from mft.training.run_setup import check_supported

    cfg = load_config(recipe, overrides)
    with pytest.raises(MftError, match=message):
        check_supported(cfg)


def test_valid_pipeline_config_passes(recipe):
    check_config(load_config(recipe, ["parallel.pp=2", "parallel.pp_layers=[2, 1]", "parallel.micro_batches=4"]))
    check_config(load_config(recipe, ["parallel.pp=3"]))  # even split, micro_batches = grad_accum_steps


def test_moe_pipeline_with_expert_parallel_passes(recipe, monkeypatch):
    from mft.training.run_setup import check_supported

    monkeypatch.setenv("MS_ROLE", "MS_WORKER")  # as inside msrun: the layout checks, not the device count
    check_supported(load_config(recipe, ["parallel.pp=2", "model.arch=mixtral", "model.num_experts=4", "parallel.dp=2",
                                         "parallel.ep=2"]))  # fmt: skip
