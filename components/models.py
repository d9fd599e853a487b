"""Seq2seq models for arithmetic, selected by name from the config.

Every model maps (encoder ids [B, S], decoder inputs [B, T]) to scores [B, T, vocab] (logits
or probabilities, see ``from_logits``) for training with teacher forcing, and offers ``greedy_decode(encoder_ids, steps)`` returning
(ids [B, steps], probabilities of the chosen ids [B, steps]) for the exported graph.

* ``attention`` (default): embeddings, a bidirectional LSTM encoder, an autoregressive LSTM
  decoder with Luong (dot-product) attention over the encoder, trained with teacher forcing;
  it can write several tokens a step (``tokens_per_step``).
* ``transformer``: the same embeddings and bidirectional LSTM encoder, and a Transformer
  decoder in place of the LSTM one: ``decoder_layers`` pre-norm blocks of causal
  self-attention over the tokens written so far, multi-head attention over the encoder
  outputs and a feed-forward layer, on a learned embedding of each token and its step.
* ``seed``: the 2017 post's model exactly: one-hot input, Bidirectional LSTM(20),
  BatchNormalization, RepeatVector, Bidirectional LSTM(20, return_sequences),
  BatchNormalization, TimeDistributed Dense softmax; not autoregressive (all positions at
  once), trained on the post's right-aligned space-padded answer with an end marker
  (``output_format: right_aligned``), Adam lr 0.01, batch 256 (pipeline/configs/seed.yaml).

Each model class says what its outputs are (``from_logits``: logits or probabilities) and
which target layout it is trained on (``output_format``, see components.tokenizer); the
trainer and the serving signature read both, so a new family only declares them.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from lstm_math.components.tokenizer import PAD_ID, START_ID, VOCAB_SIZE
# The hyperparameters and the family table are config schema; re-exported for callers.
from lstm_math.config import (FAMILY_OUTPUT_FORMAT, MODEL_FAMILIES,  # noqa: F401
                              ModelHParams, output_format_of)


class CharacterEncoder:
    """The encoder of the attention and transformer families: ``self.embedding`` of the
    characters, then ``encoder_layers`` bidirectional LSTMs (a mixin of a keras.Model, which
    tracks the layers it sets)."""

    def build_encoder(self, encoder_units, encoder_layers, dropout):
        """The LSTMs (after ``self.embedding``, which the model sets first: checkpoints key
        the weights by their order)."""
        # Dropout on each encoder layer's outputs (a Dropout layer, not LSTM(dropout=...):
        # a Bidirectional LSTM's own dropout leaves an untracked seed-generator resource in
        # the exported serving graph, and the SavedModel export then fails).
        self.encoder_layers = [
            layers.Bidirectional(
                layers.LSTM(encoder_units, return_sequences=True),
                name=f"encoder_{i}",
            )
            for i in range(encoder_layers)
        ]
        self.encoder_dropout = layers.Dropout(dropout, name="encoder_dropout")

    def encode_characters(self, encoder_ids, training=False):
        """Encoder outputs [b, s, 2 x encoder_units] and the mask of real characters."""
        mask = ops.not_equal(encoder_ids, PAD_ID)
        x = self.embedding(encoder_ids)
        for layer in self.encoder_layers:
            x = self.encoder_dropout(layer(x, mask=mask, training=training), training=training)
        return x, mask


def sliced_attention(query, keys, heads: int, scale: float = 1.0, allowed=None):
    """Dot-product attention of queries [b, t, d] over keys [b, s, d] (also the values) in
    ``heads`` heads, each over its own d / heads slice of both; ``allowed``: a boolean
    mask broadcast to [b, heads, t, s] (False: not attended). Returns [b, t, d]."""
    b, t, s = ops.shape(query)[0], ops.shape(query)[1], ops.shape(keys)[1]
    d = query.shape[-1] // heads
    q = ops.reshape(query, (b, t, heads, d))
    k = ops.reshape(keys, (b, s, heads, d))
    scores = ops.einsum("bthd,bshd->bhts", q, k) * scale
    if allowed is not None:
        scores = ops.where(allowed, scores, -1e9)
    context = ops.einsum("bhts,bshd->bthd", ops.softmax(scores, axis=-1), k)
    return ops.reshape(context, (b, t, heads * d))


@keras.saving.register_keras_serializable("lstm_math")
class AttentionSeq2Seq(CharacterEncoder, keras.Model):
    from_logits = True
    output_format = "left"

    def __init__(
        self,
        embedding_dim=32,
        encoder_units=128,
        decoder_units=128,
        encoder_layers=1,
        dropout=0.0,
        attention=True,
        attention_heads=1,
        vocab_size=VOCAB_SIZE,
        step_embedding=0,
        self_attention=False,
        tokens_per_step=1,
        self_attention_heads=1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.config_values = dict(
            embedding_dim=embedding_dim,
            encoder_units=encoder_units,
            decoder_units=decoder_units,
            encoder_layers=encoder_layers,
            dropout=dropout,
            attention=attention,
            attention_heads=attention_heads,
            vocab_size=vocab_size,
            step_embedding=step_embedding,
            self_attention=self_attention,
            tokens_per_step=tokens_per_step,
            self_attention_heads=self_attention_heads,
        )
        # tokens_per_step k > 1: each decoder step writes k tokens (k output heads, chosen
        # independently from the same state) and is fed the k it wrote at the step before
        # (step 0: START, then PAD), so an answer of T tokens takes ceil(T / k) steps.
        self.tokens_per_step = tokens_per_step
        self.vocab_size = vocab_size
        self.use_attention = attention
        self.heads = attention_heads
        if attention and (2 * encoder_units) % attention_heads:
            raise ValueError(f"trainer.model.attention_heads: {attention_heads} heads do not "
                             f"divide the {2 * encoder_units} encoder features")
        self.embedding = layers.Embedding(vocab_size, embedding_dim, name="embedding")
        # step_embedding > 0: a learned embedding of the decoder step index (that many
        # steps) added to each decoder input, for answers with a fixed layout.
        self.step_embedding = (layers.Embedding(step_embedding,
                                                embedding_dim * tokens_per_step,
                                                name="step_embedding")
                               if step_embedding else None)
        self.build_encoder(encoder_units, encoder_layers, dropout)
        self.bridge_h = layers.Dense(decoder_units, activation="tanh", name="bridge_h")
        self.bridge_c = layers.Dense(decoder_units, name="bridge_c")
        self.decoder = layers.LSTM(
            decoder_units, return_sequences=True, return_state=True, name="decoder"
        )
        self.query = layers.Dense(2 * encoder_units, use_bias=False, name="attention_query")
        # self_attention: each decoder step also attends (causally) over the decoder's own
        # states so far, and the context joins the features.
        # self_attention_heads: each head attends over its own slice of the states.
        self.self_heads = self_attention_heads
        if self_attention and decoder_units % self_attention_heads:
            raise ValueError(f"trainer.model.decoder_self_attention_heads: "
                             f"{self_attention_heads} heads do not divide the "
                             f"{decoder_units} decoder units")
        self.self_query = (layers.Dense(decoder_units, use_bias=False, name="self_query")
                           if self_attention else None)
        self.combine = layers.Dense(decoder_units, activation="tanh", name="combine")
        self.dropout = layers.Dropout(dropout)
        self.logits = layers.Dense(vocab_size * tokens_per_step, name="logits")

    def get_config(self):
        return {**super().get_config(), **self.config_values}

    def encode(self, encoder_ids, training=False):
        x, mask = self.encode_characters(encoder_ids, training=training)
        weights = ops.expand_dims(ops.cast(mask, x.dtype), -1)
        summary = ops.sum(x * weights, axis=1) / ops.maximum(ops.sum(weights, axis=1), 1.0)
        state = [self.bridge_h(summary), self.bridge_c(summary)]
        return x, mask, state

    def _decoder_input(self, ids, step):
        """Embedded decoder tokens ([b, t] with ``step`` a [t] range, or [b] at one step;
        with k tokens per step [b, t, k] or [b, k], their embeddings concatenated)."""
        y = self.embedding(ids)
        if self.tokens_per_step > 1:
            y = ops.reshape(y, (*ops.shape(y)[:-2], self.tokens_per_step * y.shape[-1]))
        if self.step_embedding is not None:
            y = y + self.step_embedding(step)
        return y

    def _grouped(self, decoder_ids):
        """Teacher forcing with k tokens per step: decoder inputs [b, t] (START, then the
        target shifted by one) -> [b, ceil(t / k), k], step s fed the k target tokens of
        step s - 1 and step 0 START, then PAD."""
        k, t = self.tokens_per_step, decoder_ids.shape[1]
        steps = -(-t // k)
        written = decoder_ids[:, 1:1 + (steps - 1) * k]
        pad = ops.full((ops.shape(decoder_ids)[0], steps * k - 1 - written.shape[1]), PAD_ID,
                       dtype=decoder_ids.dtype)
        grouped = ops.concatenate([decoder_ids[:, :1], pad[:, :k - 1], written,
                                   pad[:, k - 1:]], axis=1)
        return ops.reshape(grouped, (-1, steps, k))

    def _scores(self, features):
        """Logits of one decoder step's features: [b, vocab], or [b, k, vocab]."""
        logits = self.logits(features)
        if self.tokens_per_step > 1:
            logits = ops.reshape(logits, (*ops.shape(logits)[:-1], self.tokens_per_step,
                                          self.vocab_size))
        return logits

    def decode(self, decoder_ids, encoder_out, mask, state, training=False):
        width = decoder_ids.shape[1]
        if self.tokens_per_step > 1:
            decoder_ids = self._grouped(decoder_ids)
        y = self._decoder_input(decoder_ids, ops.arange(ops.shape(decoder_ids)[1])[None, :])
        decoder_out, h, c = self.decoder(y, initial_state=state, training=training)
        if self.use_attention:
            context = self.attend(self.query(decoder_out), encoder_out, mask)
            features = ops.concatenate([decoder_out, context], axis=-1)
        else:
            features = decoder_out
        if self.self_query is not None:
            features = ops.concatenate(
                [features, self.attend_self(self.self_query(decoder_out), decoder_out)], axis=-1)
        logits = self.logits(self.dropout(self.combine(features), training=training))
        if self.tokens_per_step > 1:  # [b, steps, k * vocab] -> [b, width, vocab]
            logits = ops.reshape(logits, (ops.shape(logits)[0], -1, self.vocab_size))
            logits = logits[:, :width, :]
        return logits, [h, c]

    def attend_self(self, query, states, causal=True):
        """Scaled dot-product attention of decoder queries [b, t, d] over decoder states
        [b, s, d], in ``self.self_heads`` heads, each over its own d / heads slice;
        ``causal``: query t sees states 0..t only (teacher forcing, s == t)."""
        t = ops.shape(query)[1]
        seen = ops.arange(t)[:, None] >= ops.arange(t)[None, :] if causal else None
        return sliced_attention(query, states, self.self_heads,
                                scale=(query.shape[-1] // self.self_heads) ** -0.5,
                                allowed=None if seen is None else seen[None, None, :, :])

    def attend(self, query, encoder_out, mask):
        """Dot-product attention of queries [b, t, d] over encoder outputs [b, s, d], in
        ``self.heads`` heads, each over its own d / heads slice; returns contexts [b, t, d]."""
        return sliced_attention(query, encoder_out, self.heads,
                                allowed=mask[:, None, None, :])

    def call(self, inputs, training=False):
        encoder_ids, decoder_ids = inputs
        encoder_out, mask, state = self.encode(encoder_ids, training=training)
        logits, _ = self.decode(decoder_ids, encoder_out, mask, state, training=training)
        return logits

    def greedy_decode(self, encoder_ids, steps: int):
        """The same computation as ``decode`` one token at a time, but each step calls the
        decoder's LSTM *cell* (two matmuls and the gates) instead of the LSTM layer, whose
        per-call sequence loop costs more than the step itself: ~40% less latency at
        batch 1, identical tokens. With k tokens per step, ceil(steps / k) cell steps."""
        encoder_out, mask, (h, c) = self.encode(encoder_ids)
        batch = ops.shape(encoder_ids)[0]
        k = self.tokens_per_step
        token = ops.full((batch,), START_ID, dtype="int32")
        if k > 1:
            token = ops.concatenate([token[:, None], ops.full((batch, k - 1), PAD_ID,
                                                              dtype="int32")], axis=1)
        ids, probs, states = [], [], []
        for step in range(-(-steps // k)):
            h, (h, c) = self.decoder.cell(
                self._decoder_input(token, ops.full((batch,), step, dtype="int32")), [h, c])
            if self.use_attention:
                query = ops.expand_dims(self.query(h), 1)
                context = self.attend(query, encoder_out, mask)[:, 0, :]
                features = ops.concatenate([h, context], axis=-1)
            else:
                features = h
            if self.self_query is not None:
                states.append(h)
                own = (h if step == 0 else  # one state so far: all its weight is on it
                       self.attend_self(ops.expand_dims(self.self_query(h), 1),
                                        ops.stack(states, axis=1), causal=False)[:, 0, :])
                features = ops.concatenate([features, own], axis=-1)
            p = ops.softmax(self._scores(self.combine(features)), axis=-1)
            token = ops.cast(ops.argmax(p, axis=-1), "int32")
            ids.append(token)
            probs.append(ops.max(p, axis=-1))
        if k == 1:
            return ops.stack(ids, axis=1), ops.stack(probs, axis=1)
        return (ops.concatenate(ids, axis=1)[:, :steps],
                ops.concatenate(probs, axis=1)[:, :steps])


@keras.saving.register_keras_serializable("lstm_math")
class TransformerDecoderBlock(layers.Layer):
    """One pre-norm decoder block: causal self-attention, attention over the encoder
    outputs, a feed-forward layer (4 x ``units``); each a residual branch."""

    def __init__(self, units, heads, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.config_values = dict(units=units, heads=heads, dropout=dropout)
        self.self_norm = layers.LayerNormalization(epsilon=1e-5, name="self_norm")
        self.self_attention = layers.MultiHeadAttention(heads, units // heads,
                                                        name="self_attention")
        self.cross_norm = layers.LayerNormalization(epsilon=1e-5, name="cross_norm")
        self.cross_attention = layers.MultiHeadAttention(heads, units // heads,
                                                         name="cross_attention")
        self.feed_forward_norm = layers.LayerNormalization(epsilon=1e-5, name="ff_norm")
        self.feed_forward_in = layers.Dense(4 * units, activation="gelu", name="ff_in")
        self.feed_forward_out = layers.Dense(units, name="ff_out")
        self.dropout = layers.Dropout(dropout)

    def get_config(self):
        return {**super().get_config(), **self.config_values}

    def call(self, x, encoder_out, encoder_mask, training=False):
        h = self.self_norm(x)
        x = x + self.dropout(self.self_attention(h, h, use_causal_mask=True,
                                                 training=training), training=training)
        h = self.cross_norm(x)
        x = x + self.dropout(self.cross_attention(h, encoder_out, value_mask=encoder_mask,
                                                  training=training), training=training)
        h = self.feed_forward_norm(x)
        return x + self.dropout(self.feed_forward_out(self.feed_forward_in(h)),
                                training=training)


@keras.saving.register_keras_serializable("lstm_math")
class TransformerDecoderSeq2Seq(CharacterEncoder, keras.Model):
    """The attention family's encoder, a Transformer decoder (``decoder_layers`` blocks of
    ``decoder_units`` with ``attention_heads`` heads)."""

    from_logits = True
    output_format = "left"

    def __init__(
        self,
        output_length,
        embedding_dim=32,
        encoder_units=128,
        decoder_units=128,
        encoder_layers=1,
        decoder_layers=2,
        attention_heads=4,
        dropout=0.0,
        vocab_size=VOCAB_SIZE,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.config_values = dict(
            output_length=output_length,
            embedding_dim=embedding_dim,
            encoder_units=encoder_units,
            decoder_units=decoder_units,
            encoder_layers=encoder_layers,
            decoder_layers=decoder_layers,
            attention_heads=attention_heads,
            dropout=dropout,
            vocab_size=vocab_size,
        )
        if decoder_units % attention_heads:
            raise ValueError(f"trainer.model.attention_heads: {attention_heads} heads do not "
                             f"divide the {decoder_units} decoder units")
        self.embedding = layers.Embedding(vocab_size, embedding_dim, name="embedding")
        self.build_encoder(encoder_units, encoder_layers, dropout)
        self.token_embedding = layers.Embedding(vocab_size, decoder_units,
                                                name="decoder_token_embedding")
        self.step_embedding = layers.Embedding(output_length, decoder_units,
                                               name="decoder_step_embedding")
        self.blocks = [TransformerDecoderBlock(decoder_units, attention_heads, dropout,
                                               name=f"decoder_{i}")
                       for i in range(decoder_layers)]
        self.final_norm = layers.LayerNormalization(epsilon=1e-5, name="final_norm")
        self.logits = layers.Dense(vocab_size, name="logits")

    def get_config(self):
        return {**super().get_config(), **self.config_values}

    def decode(self, decoder_ids, encoder_out, mask, training=False):
        steps = ops.arange(ops.shape(decoder_ids)[1])[None, :]
        x = self.token_embedding(decoder_ids) + self.step_embedding(steps)
        for block in self.blocks:
            x = block(x, encoder_out, mask, training=training)
        return self.logits(self.final_norm(x))

    def call(self, inputs, training=False):
        encoder_ids, decoder_ids = inputs
        encoder_out, mask = self.encode_characters(encoder_ids, training=training)
        return self.decode(decoder_ids, encoder_out, mask, training=training)

    def greedy_decode(self, encoder_ids, steps: int):
        """Step t runs the decoder over the t + 1 tokens so far (START and the t chosen)
        and takes the last position's scores: causal attention makes that the teacher-
        forced computation on the model's own tokens. Fixed shapes at every step."""
        encoder_out, mask = self.encode_characters(encoder_ids)
        batch = ops.shape(encoder_ids)[0]
        tokens = [ops.full((batch,), START_ID, dtype="int32")]
        ids, probs = [], []
        for _ in range(steps):
            logits = self.decode(ops.stack(tokens, axis=1), encoder_out, mask)[:, -1, :]
            p = ops.softmax(logits, axis=-1)
            token = ops.cast(ops.argmax(p, axis=-1), "int32")
            tokens.append(token)
            ids.append(token)
            probs.append(ops.max(p, axis=-1))
        return ops.stack(ids, axis=1), ops.stack(probs, axis=1)


@keras.saving.register_keras_serializable("lstm_math")
class SeedModel(keras.Model):
    """The post's model: one-hot -> BiLSTM(20) -> BN -> RepeatVector -> BiLSTM(20) -> BN -> softmax."""

    from_logits = False  # a softmax layer, as in the post
    output_format = "right_aligned"

    def __init__(self, output_length, units=20, vocab_size=VOCAB_SIZE, **kwargs):
        super().__init__(**kwargs)
        self.config_values = dict(output_length=output_length, units=units, vocab_size=vocab_size)
        self.vocab_size = vocab_size
        self.encoder = layers.Bidirectional(layers.LSTM(units), name="encoder")
        self.norm_1 = layers.BatchNormalization()
        self.repeat = layers.RepeatVector(output_length)
        self.decoder = layers.Bidirectional(layers.LSTM(units, return_sequences=True), name="decoder")
        self.norm_2 = layers.BatchNormalization()
        self.probabilities = layers.TimeDistributed(
            layers.Dense(vocab_size, activation="softmax"), name="probabilities")

    def get_config(self):
        return {**super().get_config(), **self.config_values}

    def call(self, inputs, training=False):
        encoder_ids = inputs[0]
        x = ops.one_hot(encoder_ids, self.vocab_size)
        x = self.norm_1(self.encoder(x), training=training)
        x = self.norm_2(self.decoder(self.repeat(x)), training=training)
        return self.probabilities(x)

    def greedy_decode(self, encoder_ids, steps: int):
        batch = ops.shape(encoder_ids)[0]
        dummy = ops.zeros((batch, steps), dtype="int32")
        p = self((encoder_ids, dummy))[:, :steps, :]
        return ops.cast(ops.argmax(p, axis=-1), "int32"), ops.max(p, axis=-1)


def build_model(hparams: ModelHParams, output_length: int) -> keras.Model:
    """output_length: decoder steps = longest result in characters + 1 (END)."""
    if hparams.family == "attention":
        return AttentionSeq2Seq(
            embedding_dim=hparams.embedding_dim,
            encoder_units=hparams.encoder_units,
            decoder_units=hparams.decoder_units,
            encoder_layers=hparams.encoder_layers,
            dropout=hparams.dropout,
            attention=hparams.attention,
            attention_heads=hparams.attention_heads,
            step_embedding=(-(-output_length // hparams.tokens_per_step)
                            if hparams.step_embedding else 0),
            self_attention=hparams.decoder_self_attention,
            self_attention_heads=hparams.decoder_self_attention_heads,
            tokens_per_step=hparams.tokens_per_step,
            name="attention_seq2seq",
        )
    if hparams.family == "transformer":
        return TransformerDecoderSeq2Seq(
            output_length=output_length,
            embedding_dim=hparams.embedding_dim,
            encoder_units=hparams.encoder_units,
            decoder_units=hparams.decoder_units,
            encoder_layers=hparams.encoder_layers,
            decoder_layers=hparams.decoder_layers,
            attention_heads=hparams.attention_heads,
            dropout=hparams.dropout,
            name="transformer_seq2seq",
        )
    if hparams.family == "seed":
        return SeedModel(output_length=output_length, units=hparams.encoder_units, name="seed")
    raise ValueError(f"trainer.model.family: unknown model family {hparams.family!r}; "
                     f"choose from {', '.join(MODEL_FAMILIES)}")


# The classes of each family (their output_format must match FAMILY_OUTPUT_FORMAT).
FAMILY_CLASSES = {"attention": AttentionSeq2Seq, "transformer": TransformerDecoderSeq2Seq,
                  "seed": SeedModel}
