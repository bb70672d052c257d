"""`mft serve`'s per-sequence sampler and OpenAI body parsing without a model (numpy logits, no MindSpore)."""

import numpy as np
import pytest

from mft.serving import protocol as proto
from mft.serving.sampling import ParamError, SamplingOptions, SequenceSampler

VOCAB = 8


def choose(logits, **kw):
    return SequenceSampler(SamplingOptions(**kw), [1, 2], VOCAB).choose(np.asarray(logits, np.float32))


def test_logit_bias_is_added_before_greedy_and_penalties():
    logits = [0, 5, 4, 0, 0, 0, 0, 0]
    assert choose(logits, temperature=0) == 1
    assert choose(logits, temperature=0, logit_bias={"1": -100}) == 2
    assert choose(logits, temperature=0, logit_bias={6: 5.5}) == 6
    # bias first, then the repetition penalty on the prompt's tokens 1 and 2 (vLLM's order): 1 -> (5 + 5) / 2 = 5 < 6 <- 3;
    # the other order would give 1 -> 5 / 2 + 5 = 7.5
    assert choose(logits, temperature=0, logit_bias={"1": 5, "3": 6}, repetition_penalty=2.0) == 3
    assert choose(logits, temperature=0, logit_bias={"1": 5, "3": 4.9}, repetition_penalty=2.0) == 1
    # +100 wins every sampled draw too
    sampler = SequenceSampler(SamplingOptions(temperature=1.0, seed=0, logit_bias={"5": 100}), [1], VOCAB)
    assert {sampler.choose(np.asarray(logits, np.float32)) for _ in range(20)} == {5}


@pytest.mark.parametrize("bias", [{"x": 1}, {"-1": 1}, {"3": 100.5}, {"3": "high"}, [1, 2], {"3": float("nan")}])
def test_bad_logit_bias_names_the_field(bias):
    with pytest.raises(ParamError) as e:
        SamplingOptions(logit_bias=bias)
    assert e.value.param == "logit_bias"


def test_logit_bias_outside_the_vocabulary():
    with pytest.raises(ParamError) as e:
        SequenceSampler(SamplingOptions(logit_bias={"8": 1}), [1], VOCAB)
    assert e.value.param == "logit_bias"
    with pytest.raises(ParamError) as e:
        proto.completion_options({"prompt": "x", "logit_bias": {"8": 1}}, VOCAB)
    assert e.value.param == "logit_bias" and "[0, 8)" in str(e.value)


def test_negative_and_huge_seeds_repeat():
    logits = np.zeros(VOCAB, np.float32)
    for seed in (-5, 2**70, 0):
        a = SequenceSampler(SamplingOptions(temperature=1.0, seed=seed), [1], VOCAB)
        b = SequenceSampler(SamplingOptions(temperature=1.0, seed=seed), [1], VOCAB)
        assert [a.choose(logits) for _ in range(10)] == [b.choose(logits) for _ in range(10)]


def test_stream_options_and_best_of_rules():
    assert proto.stream_flags({}) == proto.StreamFlags(False, False, False)
    assert proto.stream_flags({"stream": True, "stream_options": {"include_usage": True}}) == proto.StreamFlags(True, True, False)
    assert proto.stream_flags({"stream": True, "stream_options": {"continuous_usage_stats": True}}).continuous_usage is False
    assert proto.stream_flags({"stream": False, "stream_options": None}).stream is False
    for body in ({"stream": False, "stream_options": {"include_usage": True}}, {"stream": True, "stream_options": {"include_usage": 1}},
                 {"stream": True, "stream_options": []}):
        with pytest.raises(ParamError) as e:
            proto.stream_flags(body)
        assert e.value.param == "stream_options"
    options, echo, best_of = proto.completion_options({"prompt": "x", "n": 2, "best_of": 4}, VOCAB)
    assert options.n == 4 and options.logprobs == 0 and best_of == 4 and not echo
    options, _, best_of = proto.completion_options({"prompt": "x", "n": 2, "best_of": 2, "logprobs": 3}, VOCAB)
    assert options.n == 2 and options.logprobs == 3 and best_of is None
    for body in ({"best_of": 1, "n": 2}, {"best_of": 17}, {"best_of": 3, "stream": True}, {"best_of": "3"}):
        with pytest.raises(ParamError) as e:
            proto.completion_options({"prompt": "x", **body}, VOCAB)
        assert e.value.param == "best_of"


def test_chat_token_limits_and_refusals():
    assert proto.chat_options({"max_tokens": 9, "max_completion_tokens": 3}, 5, 64, VOCAB).max_tokens == 3
    assert proto.chat_options({"max_tokens": 9, "max_completion_tokens": None}, 5, 64, VOCAB).max_tokens == 9
    assert proto.chat_options({}, 5, 64, VOCAB).max_tokens == 59
    with pytest.raises(ParamError) as e:
        proto.chat_options({}, 64, 64, VOCAB)
    assert e.value.param == "messages" and e.value.code == "context_length_exceeded"
    tool = {"type": "function", "function": {"name": "f"}}
    proto.refuse_unsupported({"tools": [tool], "tool_choice": "none", "response_format": {"type": "text"}, "user": "u"}, "chat")
    proto.refuse_unsupported({"tool_choice": "auto", "functions": [], "suffix": None}, "chat")
    for body, param in (({"tools": [tool], "tool_choice": "auto"}, "tools"), ({"tools": [tool]}, "tools"),
                        ({"tool_choice": "required"}, "tool_choice"), ({"response_format": {"type": "json_schema"}}, "response_format"),
                        ({"use_beam_search": True}, "use_beam_search"), ({"echo": True}, "echo")):
        with pytest.raises(ParamError) as e:
            proto.refuse_unsupported(body, "chat")
        assert e.value.param == param
    with pytest.raises(ParamError) as e:
        proto.refuse_unsupported({"suffix": "tail"}, "completions")
    assert e.value.param == "suffix"


def test_unknown_fields_are_logged_once(caplog):
    with caplog.at_level("WARNING", logger="mft.serve"):
        for _ in range(2):
            proto.refuse_unsupported({"messages": [], "some_new_field": 1, "user": "u", "metadata": {}}, "chat")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["/v1/chat/completions: ignoring the unknown field 'some_new_field'"]


def test_logprobs_stay_valid_json():
    import json

    from mft.serving.sequence import TokenLogprob

    entries = [(1, None), (2, TokenLogprob(2, float("-inf"), [(3, -0.5), (2, float("-inf"))])), (3, TokenLogprob(3, float("nan"), []))]
    out = proto.completion_logprobs(entries, lambda t: f"t{t}")
    assert out["token_logprobs"] == [None, -9999.0, -9999.0] and out["top_logprobs"][1] == {"t3": -0.5, "t2": -9999.0}
    json.dumps(out, allow_nan=False)
    chat = proto.chat_logprobs([e for _, e in entries[1:]], lambda t: f"t{t}")
    assert [c["logprob"] for c in chat["content"]] == [-9999.0, -9999.0]
    json.dumps(chat, allow_nan=False)


def test_allowed_token_ids_mask_everything_else():
    logits = [0, 5, 4, 0, 0, 0, 0, 0]
    assert choose(logits, temperature=0, allowed_token_ids=[3, 6]) == 3
    assert choose(logits, temperature=0, allowed_token_ids=[3, 6], logit_bias={"6": 1}) == 6
    assert choose(logits, temperature=0, allowed_token_ids=[2], logit_bias={"1": 100}) == 2  # a bias cannot bring a masked id back
    sampler = SequenceSampler(SamplingOptions(temperature=2.0, top_k=5, top_p=0.9, seed=1, allowed_token_ids=[4, 7]), [1], VOCAB)
    assert {sampler.choose(np.asarray(logits, np.float32)) for _ in range(30)} == {4, 7}
    for ids in ([], [-1], [True], "3"):
        with pytest.raises(ParamError) as e:
            SamplingOptions(allowed_token_ids=ids)
        assert e.value.param == "allowed_token_ids"
    with pytest.raises(ParamError) as e:
        proto.completion_options({"prompt": "x", "allowed_token_ids": [8]}, VOCAB)
    assert e.value.param == "allowed_token_ids"
