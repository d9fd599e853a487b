import numpy as np
import pytest
import tensorflow as tf

from lstm_math.components import tokenizer as tok


@pytest.mark.parametrize("reverse", [False, True])
def test_results_round_trip(reverse):
    results = ["118", "-2", "0", "1998", "-24338"]
    dec_in, dec_out = tok.encode_results(tf.constant(results), 6, reverse)
    assert dec_in.shape == (5, 7) and dec_out.shape == (5, 7)
    assert (dec_in.numpy()[:, 0] == tok.START_ID).all()
    # teacher forcing: inputs are the targets shifted right by one
    assert (dec_in.numpy()[:, 1:] == np.where(dec_out.numpy()[:, :-1] == tok.END_ID, tok.PAD_ID,
                                               dec_out.numpy()[:, :-1]))[dec_out.numpy()[:, :-1] != tok.PAD_ID].all()
    decoded = tok.decode_results(dec_out, reverse).numpy().astype(str).tolist()
    assert decoded == results
    lengths = tok.result_lengths(dec_out).numpy().tolist()
    assert lengths == [len(r) + 1 for r in results]


def test_reverse_puts_least_significant_digit_first():
    _, out = tok.encode_results(tf.constant(["120"]), 4, True)
    chars = [tok.VOCAB[i] for i in out.numpy()[0]]
    assert chars[:4] == ["0", "2", "1", tok.END]


def test_equations_are_whitespace_insensitive_and_unknowns_map_to_unk():
    ids = tok.encode_equations(tf.constant(["31 + 87", "31+87", " 31  +87 ", "3x+1"]), 7).numpy()
    assert (ids[0] == ids[1]).all() and (ids[0] == ids[2]).all()
    assert [tok.VOCAB[i] for i in ids[0][:5]] == list("31+87")
    assert ids[0][5:].tolist() == [tok.PAD_ID, tok.PAD_ID]
    assert ids[3][1] == tok.UNK_ID


def test_decode_stops_at_first_end():
    ids = tf.constant([[tok.VOCAB.index("4"), tok.VOCAB.index("2"), tok.END_ID,
                        tok.VOCAB.index("9")]])
    assert tok.decode_results(ids, False).numpy()[0] == b"42"
    assert tok.decode_results(ids, True).numpy()[0] == b"24"


def test_right_aligned_results_are_space_padded_with_an_end_marker():
    """The seed model's (the 2017 post's) layout: right-aligned answer, spaces, END."""
    results = ["118", "-2", "0", "1998"]
    dec_in, dec_out = tok.encode_results(tf.constant(results), 4, False, "right_aligned")
    rows = ["".join(tok.VOCAB[i] if tok.VOCAB[i] != tok.END else "$" for i in row)
            for row in dec_out.numpy()]
    assert rows == [" 118$", "  -2$", "   0$", "1998$"]
    assert (dec_out.numpy() != tok.PAD_ID).all()  # every position is a target
    assert (dec_in.numpy()[:, 0] == tok.START_ID).all()
    assert (dec_in.numpy()[:, 1:] == dec_out.numpy()[:, :-1]).all()
    assert tok.decode_results(dec_out, False).numpy().astype(str).tolist() == results
    assert tok.result_lengths(dec_out).numpy().tolist() == [5, 5, 5, 5]


def test_space_token_does_not_change_the_other_ids_and_never_enters_equations():
    assert tok.VOCAB[:len(tok.SPECIALS) + len(tok.CHARACTERS)] == tok.SPECIALS + tok.CHARACTERS
    assert tok.SPACE_ID == tok.VOCAB_SIZE - 1
    ids = tok.encode_equations(tf.constant([" 1 + 2 "]), 5).numpy()
    assert tok.SPACE_ID not in ids


def test_unknown_output_format_is_rejected():
    with pytest.raises(ValueError, match="output_format"):
        tok.encode_results(tf.constant(["1"]), 2, False, "centered")
