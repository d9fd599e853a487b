import numpy as np
import pytest
import tensorflow as tf

from components import tokenizer as tok


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
