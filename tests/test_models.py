"""The model registry: the post's seed model exactly, the attention family from config."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from lstm_math.components import tokenizer as tok
from lstm_math.components.models import ModelHParams, build_model, output_format_of
from lstm_math.components.trainer import compile_model, model_coverage
from lstm_math.config import ConfigError, coverage_of, load_config


def test_seed_is_the_posts_model_layer_by_layer():
    config = load_config("seed")
    hp = config.trainer.model
    coverage = model_coverage(coverage_of(config), hp)
    model = compile_model(hp, coverage, 10, config.trainer.optimizer)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Bidirectional", "BatchNormalization", "RepeatVector", "Bidirectional",
                     "BatchNormalization", "TimeDistributed"]
    enc, _, repeat, dec, _, out = model.layers
    assert enc.forward_layer.units == 20 and not enc.forward_layer.return_sequences
    assert dec.forward_layer.units == 20 and dec.forward_layer.return_sequences
    assert repeat.n == coverage.max_result_length + 1 == 5  # '1998' + END
    assert out.layer.activation.__name__ == "softmax" and out.layer.units == tok.VOCAB_SIZE
    # one-hot input: the first LSTM sees one column per vocabulary entry
    assert enc.forward_layer.cell.kernel.shape[0] == tok.VOCAB_SIZE
    opt = model.optimizer
    assert isinstance(opt, keras.optimizers.Adam)
    assert float(opt.learning_rate.numpy()) == pytest.approx(0.01)
    assert opt.clipnorm is None
    assert config.trainer.batch_size == 256 and config.trainer.epochs == 200
    assert coverage.output_format == "right_aligned" and not coverage.reverse_output
    d = config.task.data
    assert (d.operators, d.operand_min, d.operand_max) == (["+"], 0, 999)
    # ~30,000 for training + validation (10% of it held out), ~20,000 fresh for the test
    fr = d.split_fractions
    assert d.num_examples * (fr["train"] + fr["validation"]) == pytest.approx(30_000)
    assert fr["validation"] / (fr["train"] + fr["validation"]) == pytest.approx(0.1)
    assert d.num_examples * fr["test"] == pytest.approx(20_000)
    probs = model((tf.zeros([3, 7], tf.int32), tf.zeros([3, 5], tf.int32)))
    np.testing.assert_allclose(probs.numpy().sum(-1), 1.0, rtol=1e-5)
    ids, p = model.greedy_decode(tf.zeros([3, 7], tf.int32), 5)
    assert ids.shape == (3, 5) and p.shape == (3, 5)


def test_attention_hyperparameters_come_from_config():
    config = load_config("default", ["trainer.model.embedding_dim=12",
                                     "trainer.model.encoder_units=24",
                                     "trainer.model.decoder_units=20",
                                     "trainer.model.encoder_layers=2",
                                     "trainer.model.dropout=0.25",
                                     "trainer.model.attention=false"])
    hp = config.trainer.model
    model = compile_model(hp, model_coverage(coverage_of(config), hp), 10)
    assert model.embedding.output_dim == 12
    assert len(model.encoder_layers) == 2
    assert model.encoder_layers[0].forward_layer.units == 24
    assert model.decoder.units == 20
    assert model.dropout.rate == 0.25
    assert model.use_attention is False
    assert output_format_of("attention") == "left"
    with_attention = compile_model(dataclasses.replace(hp, attention=True),
                                   model_coverage(coverage_of(config), hp), 10)
    assert with_attention.count_params() > model.count_params()


def test_attention_heads_split_the_encoder_outputs():
    """Several heads each attend over their own slice of the encoder outputs (the first
    answer digit needs both operands' units digits: one head can look at only one); a head
    count that does not divide the width is refused, naming the field."""
    config = load_config("smoke", ["trainer.model.encoder_units=24",
                                   "trainer.model.attention_heads=4"])
    hp = config.trainer.model
    coverage = model_coverage(coverage_of(config), hp)
    model = compile_model(hp, coverage, 10)
    assert model.heads == 4
    ids = tf.constant(np.random.default_rng(1).integers(1, 12, (2, 9)), tf.int32)
    encoder_out, mask, _ = model.encode(ids)
    query = tf.random.stateless_normal([2, 3, 48], seed=[1, 2])
    context = model.attend(query, encoder_out, mask).numpy()
    # head 0 reads only the first 12 features: changing the others leaves its context alone
    other = encoder_out.numpy().copy()
    other[..., 12:] += 1.0
    changed = model.attend(query, tf.constant(other), mask).numpy()
    np.testing.assert_allclose(changed[..., :12], context[..., :12], atol=1e-6)
    assert not np.allclose(changed[..., 12:], context[..., 12:])
    with pytest.raises(ConfigError, match="^trainer.model.attention_heads"):
        load_config("smoke", ["trainer.model.encoder_units=24",
                              "trainer.model.attention_heads=5"])


def test_unknown_family_is_a_clear_error():
    with pytest.raises(ValueError, match="^trainer.model.family"):
        build_model(ModelHParams(family="gru"), 5)


def _export_and_serve(model, coverage, tmp_path, equations):
    """Export ``model`` with the project's serving signature, load it back with the TF2
    loader and return the signature's ``valid`` output for ``equations``."""
    from lstm_math.components.signature import build_serving_function

    module = tf.Module()
    module.model = model
    module.serve = build_serving_function(model, coverage)
    tf.saved_model.save(module, str(tmp_path / "sm"), signatures={"serving_default": module.serve})
    served = tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_default"](
        equation=tf.constant(equations))
    return served["valid"].numpy().tolist()


def test_attention_with_dropout_exports_a_working_saved_model(tmp_path):
    """Dropout must not leave training-only resources in the exported serving graph."""
    config = load_config("smoke", ["trainer.model.dropout=0.2"])
    hp = config.trainer.model
    coverage = model_coverage(coverage_of(config), hp)
    model = compile_model(hp, coverage, 10)
    width = coverage.max_result_length + 1
    x = (tf.zeros([2, coverage.max_input_length], tf.int32), tf.zeros([2, width], tf.int32))
    tf.function(lambda inputs: model(inputs, training=True))(x)  # as the training loop does
    assert model.encoder_dropout.rate == 0.2
    assert _export_and_serve(model, coverage, tmp_path, ["31 + 87", "1 + x"]) == [True, False]


@pytest.mark.parametrize("overrides", [
    [], ["trainer.model.attention=false"], ["trainer.model.encoder_layers=2"],
    ["trainer.model.attention_heads=4"], ["trainer.model.decoder_self_attention=true"],
    ["trainer.model.decoder_self_attention=true", "trainer.model.step_embedding=true",
     "trainer.model.attention_heads=4"],
    ["trainer.model.tokens_per_step=3", "trainer.model.step_embedding=true"],
    ["trainer.model.tokens_per_step=2", "trainer.model.decoder_self_attention=true"],
    ["trainer.model.decoder_self_attention=true",
     "trainer.model.decoder_self_attention_heads=4", "trainer.model.step_embedding=true"],
    ["trainer.model.family=transformer", "trainer.model.attention_heads=4"],
    ["trainer.model.family=transformer", "trainer.model.attention_heads=2",
     "trainer.model.decoder_layers=2", "trainer.model.dropout=0.1"]])
def test_greedy_decode_is_the_teacher_forced_model_on_its_own_tokens(overrides):
    """The serving decoder (the LSTM cell step by step; the transformer decoder over the
    tokens so far) computes what the training graph (the whole sequence at once) computes:
    fed its own tokens as decoder
    inputs, the trained call picks the same token at every step with the same probability."""
    config = load_config("smoke", ["trainer.seed=5", "trainer.model.encoder_units=24",
                                   "trainer.model.decoder_units=20"] + overrides)
    hp = config.trainer.model
    coverage = model_coverage(coverage_of(config), hp)
    keras.utils.set_random_seed(5)
    model = compile_model(hp, coverage, 10)
    rng = np.random.default_rng(0)
    equations = tf.constant([f"{a}+{b}" for a, b in rng.integers(0, 100, (300, 2))])
    ids = tok.encode_equations(equations, coverage.max_input_length)
    steps = coverage.max_result_length + 1
    tokens, probs = (t.numpy() for t in model.greedy_decode(ids, steps))
    assert tokens.shape == probs.shape == (300, steps)
    decoder_in = np.concatenate([np.full((300, 1), tok.START_ID), tokens[:, :-1]], axis=1)
    p = tf.nn.softmax(model((ids, tf.constant(decoder_in, tf.int32)), training=False)).numpy()
    top2 = np.sort(p, axis=-1)[..., -2:]
    tie = (top2[..., 1] - top2[..., 0]) < 1e-5  # float rounding may flip a near-tie
    assert np.all((p.argmax(-1) == tokens) | tie)
    assert (p.argmax(-1) == tokens).mean() > 0.99
    chosen = np.take_along_axis(p, tokens[..., None], axis=-1)[..., 0]
    np.testing.assert_allclose(probs, chosen, atol=1e-5)


def test_decoder_self_attention_is_causal_and_exports(tmp_path):
    """With ``decoder_self_attention`` each step also reads the decoder's earlier states:
    the teacher-forced scores at step t depend on decoder inputs 0..t only (a later token
    changes nothing before it), the model has the extra weights, it exports and serves, and
    a family without an autoregressive decoder refuses the field by name."""
    config = load_config("smoke", ["trainer.model.decoder_self_attention=true"])
    hp = config.trainer.model
    coverage = model_coverage(coverage_of(config), hp)
    keras.utils.set_random_seed(3)
    model = compile_model(hp, coverage, 10)
    plain = compile_model(dataclasses.replace(hp, decoder_self_attention=False), coverage, 10)
    ids = tok.encode_equations(tf.constant(["31+87", "7+6"]), coverage.max_input_length)
    width = coverage.max_result_length + 1
    rng = np.random.default_rng(0)
    decoder_in = rng.integers(1, 12, (2, width)).astype(np.int32)
    later = decoder_in.copy()
    later[:, -1] = (later[:, -1] % 11) + 1  # a different last input token
    a = model((ids, tf.constant(decoder_in)), training=False).numpy()
    b = model((ids, tf.constant(later)), training=False).numpy()
    np.testing.assert_allclose(a[:, :-1], b[:, :-1], atol=1e-6)
    assert not np.allclose(a[:, -1], b[:, -1])
    plain((ids, tf.constant(decoder_in)))
    assert model.count_params() > plain.count_params()
    assert _export_and_serve(model, coverage, tmp_path, ["31 + 87", "1 + x"]) == [True, False]
    with pytest.raises(ConfigError, match="^trainer.model.decoder_self_attention"):
        load_config("seed", ["trainer.model.decoder_self_attention=true"])


def test_decoder_self_attention_heads_each_read_their_own_slice(tmp_path):
    """``decoder_self_attention_heads`` h splits the self-attention into h heads, each
    scoring and reading its own slice of the decoder states: the same weights as one head,
    other scores (each head can look at another earlier step), still causal; one head is
    the plain self-attention; the model keeps the field through saving and exports."""
    config = load_config("smoke", ["trainer.model.decoder_self_attention=true",
                                   "trainer.model.decoder_self_attention_heads=4"])
    hp = config.trainer.model
    coverage = model_coverage(coverage_of(config), hp)
    keras.utils.set_random_seed(3)
    model = compile_model(hp, coverage, 10)
    one = compile_model(dataclasses.replace(hp, decoder_self_attention_heads=1), coverage, 10)
    ids = tok.encode_equations(tf.constant(["31+87", "7+6"]), coverage.max_input_length)
    width = coverage.max_result_length + 1
    decoder_in = np.random.default_rng(0).integers(1, 12, (2, width)).astype(np.int32)
    one((ids, tf.constant(decoder_in)))
    model((ids, tf.constant(decoder_in)))
    assert model.count_params() == one.count_params()
    one.set_weights(model.get_weights())

    # by hand, from the layers' own outputs: each head a softmax over its slice
    rng = np.random.default_rng(1)
    query = rng.normal(size=(2, 5, 16)).astype(np.float32)
    states = rng.normal(size=(2, 5, 16)).astype(np.float32)
    got = model.attend_self(tf.constant(query), tf.constant(states)).numpy()
    for h in range(4):
        q, k = query[..., 4 * h:4 * h + 4], states[..., 4 * h:4 * h + 4]
        scores = np.einsum("btd,bsd->bts", q, k) / 2.0
        scores = np.where(np.tril(np.ones((5, 5), bool))[None], scores, -1e9)
        w = np.exp(scores - scores.max(-1, keepdims=True))
        w /= w.sum(-1, keepdims=True)
        np.testing.assert_allclose(got[..., 4 * h:4 * h + 4], w @ k, rtol=1e-5, atol=1e-5)
    plain = one.attend_self(tf.constant(query), tf.constant(states)).numpy()
    assert not np.allclose(got, plain, atol=1e-3)  # one head over all 16 is another thing

    a = model((ids, tf.constant(decoder_in)), training=False).numpy()
    later = decoder_in.copy()
    later[:, -1] = (later[:, -1] % 11) + 1
    b = model((ids, tf.constant(later)), training=False).numpy()
    np.testing.assert_allclose(a[:, :-1], b[:, :-1], atol=1e-6)
    assert not np.allclose(a, one((ids, tf.constant(decoder_in)), training=False).numpy())
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path, compile=False)
    assert loaded.get_config()["self_attention_heads"] == 4
    np.testing.assert_allclose(loaded((ids, tf.constant(decoder_in))).numpy(), a, atol=1e-5)
    assert _export_and_serve(model, coverage, tmp_path, ["31 + 87", "1 + x"]) == [True, False]


@pytest.mark.parametrize("k", [2, 3])
def test_tokens_per_step_writes_k_tokens_a_step_causally_and_exports(tmp_path, k):
    """With ``tokens_per_step`` k the decoder takes ceil(width / k) steps: the teacher-
    forced scores of step s (positions sk .. sk + k - 1) depend only on the tokens written
    before sk (decoder inputs 0 .. sk), a later one changes nothing before its step, and
    the model exports and serves through the project's signature."""
    config = load_config("smoke", [f"trainer.model.tokens_per_step={k}",
                                   "trainer.model.step_embedding=true"])
    hp = config.trainer.model
    coverage = model_coverage(coverage_of(config), hp)
    keras.utils.set_random_seed(3)
    model = compile_model(hp, coverage, 10)
    width = coverage.max_result_length + 1
    assert model.step_embedding.input_dim == -(-width // k)
    ids = tok.encode_equations(tf.constant(["31+87", "7+6"]), coverage.max_input_length)
    decoder_in = np.random.default_rng(0).integers(1, 12, (2, width)).astype(np.int32)
    a = model((ids, tf.constant(decoder_in)), training=False).numpy()
    assert a.shape == (2, width, tok.VOCAB_SIZE)
    for j in range(1, width):  # decoder input j is the token written at position j - 1
        changed = decoder_in.copy()
        changed[:, j] = (changed[:, j] % 11) + 1
        b = model((ids, tf.constant(changed)), training=False).numpy()
        first_reader = ((j - 1) // k + 1) * k  # the first position of the next step
        np.testing.assert_allclose(a[:, :first_reader], b[:, :first_reader], atol=1e-6)
        if first_reader < width:
            assert not np.allclose(a[:, first_reader:], b[:, first_reader:])
    assert _export_and_serve(model, coverage, tmp_path, ["31 + 87", "1 + x"]) == [True, False]


def test_family_table_in_the_config_matches_the_model_classes():
    from lstm_math.components.models import FAMILY_CLASSES
    from lstm_math.config import FAMILY_OUTPUT_FORMAT, MODEL_FAMILIES

    assert set(FAMILY_CLASSES) == set(MODEL_FAMILIES) == set(FAMILY_OUTPUT_FORMAT)
    for family, cls in FAMILY_CLASSES.items():
        assert cls.output_format == FAMILY_OUTPUT_FORMAT[family]


@pytest.mark.parametrize("schedule", ["cosine", "constant"])
def test_optimizer_warms_up_then_follows_its_schedule(schedule):
    from lstm_math.components.trainer import build_optimizer, learning_rate_schedule
    from lstm_math.config import OptimizerConfig

    opt = OptimizerConfig(learning_rate=0.01, schedule=schedule, warmup_steps=10)
    lr = learning_rate_schedule(opt, total_steps=110)
    rate = [float(lr(step)) for step in (0, 5, 10, 60, 110)]
    assert rate[0] == 0.0 and rate[1] == pytest.approx(0.005) and rate[2] == pytest.approx(0.01)
    if schedule == "cosine":
        assert 0.0002 < rate[3] < 0.01 and rate[4] == pytest.approx(0.0002)
    else:
        assert rate[3] == rate[4] == pytest.approx(0.01)
    # Without warm-up: today's schedules exactly (no behaviour change).
    plain = OptimizerConfig(learning_rate=0.01, schedule=schedule)
    if schedule == "cosine":
        cosine = learning_rate_schedule(plain, total_steps=100)
        assert type(cosine).__name__ == "CosineDecay" and cosine.get_config()["warmup_steps"] == 0
        assert float(cosine(0)) == pytest.approx(0.01)
    else:
        assert learning_rate_schedule(plain, total_steps=100) == 0.01
    plain = build_optimizer(plain, "attention", total_steps=100)
    assert plain.clipnorm == 1.0
    assert build_optimizer(OptimizerConfig(), "seed", 100).clipnorm is None
    assert build_optimizer(OptimizerConfig(clipnorm=2.0), "seed", 100).clipnorm == 2.0


def test_transformer_decoder_is_causal_learns_and_exports(tmp_path):
    """The transformer family: a BiLSTM encoder and a stack of decoder blocks. The
    teacher-forced scores at step t depend on decoder inputs 0..t only, the hyperparameters
    shape the layers, and it exports and serves through the project's signature."""
    from lstm_math.components.models import TransformerDecoderSeq2Seq

    config = load_config("smoke", ["trainer.model.family=transformer",
                                   "trainer.model.decoder_units=32",
                                   "trainer.model.attention_heads=4",
                                   "trainer.model.decoder_layers=2"])
    hp = config.trainer.model
    coverage = model_coverage(coverage_of(config), hp)
    keras.utils.set_random_seed(3)
    model = compile_model(hp, coverage, 10)
    assert isinstance(model, TransformerDecoderSeq2Seq) and len(model.blocks) == 2
    assert model.blocks[0].self_attention.num_heads == 4
    assert model.step_embedding.input_dim == coverage.max_result_length + 1
    assert model.optimizer.clipnorm == 1.0
    ids = tok.encode_equations(tf.constant(["31+87", "7+6"]), coverage.max_input_length)
    width = coverage.max_result_length + 1
    decoder_in = np.random.default_rng(0).integers(1, 12, (2, width)).astype(np.int32)
    later = decoder_in.copy()
    later[:, -1] = (later[:, -1] % 11) + 1
    a = model((ids, tf.constant(decoder_in)), training=False).numpy()
    b = model((ids, tf.constant(later)), training=False).numpy()
    np.testing.assert_allclose(a[:, :-1], b[:, :-1], atol=1e-5)
    assert not np.allclose(a[:, -1], b[:, -1])
    assert _export_and_serve(model, coverage, tmp_path, ["31 + 87", "1 + x"]) == [True, False]


@pytest.mark.parametrize("overrides,field", [
    (["trainer.model.family=transformer", "trainer.model.decoder_units=20",
      "trainer.model.attention_heads=3"], "trainer.model.attention_heads"),
    (["trainer.model.family=transformer", "trainer.model.decoder_layers=0"],
     "trainer.model.decoder_layers"),
    (["trainer.model.decoder_layers=2"], "trainer.model.decoder_layers"),
    (["trainer.model.family=transformer", "trainer.model.attention=false"],
     "trainer.model.attention"),
    (["trainer.model.family=transformer", "trainer.model.decoder_self_attention=true"],
     "trainer.model.decoder_self_attention"),
    (["trainer.model.tokens_per_step=0"], "trainer.model.tokens_per_step"),
    (["trainer.model.decoder_self_attention_heads=2"],
     "trainer.model.decoder_self_attention_heads"),
    (["trainer.model.decoder_self_attention=true", "trainer.model.decoder_units=20",
      "trainer.model.decoder_self_attention_heads=3"],
     "trainer.model.decoder_self_attention_heads"),
    (["trainer.model.decoder_self_attention=true",
      "trainer.model.decoder_self_attention_heads=0"],
     "trainer.model.decoder_self_attention_heads"),
    (["trainer.model.family=transformer", "trainer.model.tokens_per_step=2"],
     "trainer.model.tokens_per_step"),
])
def test_bad_transformer_configs_fail_fast_naming_the_field(overrides, field):
    with pytest.raises(ConfigError) as info:
        load_config("smoke", overrides)
    assert str(info.value).startswith(field)
