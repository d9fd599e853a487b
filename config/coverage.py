"""``Coverage``: what a model covers, the contract between the data, the model and serving.

The operators, operand range and operand counts of the equations (its ``space()``), the
encoder and decoder lengths, and how the model lays out its answers. ExampleGen records the
data's coverage (``Coverage.of_data``); the Trainer and the Tuner's trials fix the model's
part (``for_model``); the Exporter writes ``to_dict()`` into the SavedModel's assets, where
the model server reads it back as plain JSON (serving never imports this package).

The model families' answer layouts live here too: which layout a family is trained on is
part of what it covers (``components.tokenizer.encode_results``; components.models builds
the families and tests/test_models.py checks that they agree).
"""

from __future__ import annotations

import dataclasses

from lstm_math.components import answer_formats
from lstm_math.components.equations import max_equation_chars, max_result_chars
from lstm_math.components.sampling import EquationSpace

MODEL_FAMILIES = ("attention", "transformer", "seed")
FAMILY_OUTPUT_FORMAT = {"attention": "left", "transformer": "left", "seed": "right_aligned"}


def output_format_of(family: str) -> str:
    """The target layout a family is trained on (components.tokenizer.encode_results)."""
    return FAMILY_OUTPUT_FORMAT.get(family, "left")


@dataclasses.dataclass(frozen=True)
class Coverage:
    operators: tuple
    operand_min: int
    operand_max: int
    num_operands: int
    min_operands: int
    max_input_length: int  # characters of the longest equation, spaces removed
    max_result_length: int  # decoder characters the model emits (answer, or its working)
    # How the answers are laid out: the data's own (left, not reversed) until a model
    # family fixes it (for_model).
    reverse_output: bool = False
    output_format: str = "left"
    # What the model writes for each operator tag (task.data.answer_format; tags not named:
    # the answer itself), components.answer_formats.
    answer_format: dict = dataclasses.field(default_factory=dict)
    # Operands zero-padded to the widest operand's digits before the encoder (the model's
    # trainer.model.pad_operands).
    pad_operands: bool = False

    @staticmethod
    def of_data(data) -> "Coverage":
        """The coverage of a ``task.data`` section (a ``DataConfig``)."""
        low = data.num_operands if data.min_operands is None else data.min_operands
        answers = max_result_chars(data.operators, data.operand_min, data.operand_max,
                                   data.num_operands, low)
        fmt = dict(getattr(data, "answer_format", None) or {})
        return Coverage(
            operators=tuple(data.operators), operand_min=data.operand_min,
            operand_max=data.operand_max, num_operands=data.num_operands, min_operands=low,
            max_input_length=max_equation_chars(data.operand_max, data.num_operands),
            # every answer, or working, of the task fits in it
            max_result_length=answer_formats.max_target_length(
                fmt, data.operand_max, data.num_operands, answers),
            answer_format=fmt)

    def for_model(self, family: str, reverse_output: bool,
                  max_result_length: int = 0, pad_operands: bool = False) -> "Coverage":
        """This data's coverage as a model of ``family`` is trained on it:
        ``max_result_length`` (``trainer.max_result_length``; 0 = the data's own), the
        family's answer layout (reversed only where the family's layout is left) and
        whether its operands are zero-padded (``pad_operands``)."""
        layout = output_format_of(family)
        return dataclasses.replace(
            self, max_result_length=max_result_length or self.max_result_length,
            reverse_output=bool(reverse_output) and layout == "left", output_format=layout,
            pad_operands=bool(pad_operands))

    def space(self) -> EquationSpace:
        """Every equation this coverage holds (components.sampling.EquationSpace)."""
        return EquationSpace(tuple(self.operators), self.operand_min, self.operand_max,
                             self.num_operands, self.min_operands)

    def to_dict(self) -> dict:
        """The JSON form (coverage.json, the SavedModel's assets, artifact properties)."""
        d = dataclasses.asdict(self)
        d["operators"] = list(self.operators)
        d["answer_format"] = dict(self.answer_format)
        return d

    @staticmethod
    def from_dict(d: dict) -> "Coverage":
        """From the JSON form; older files may lack ``min_operands`` (= num_operands) and
        ``output_format`` (left), ``answer_format`` (none) and ``pad_operands`` (false)."""
        n = int(d["num_operands"])
        return Coverage(
            operators=tuple(d["operators"]), operand_min=int(d["operand_min"]),
            operand_max=int(d["operand_max"]), num_operands=n,
            min_operands=int(d.get("min_operands") or n),
            max_input_length=int(d["max_input_length"]),
            max_result_length=int(d["max_result_length"]),
            reverse_output=bool(d.get("reverse_output", False)),
            output_format=d.get("output_format") or "left",
            answer_format=dict(d.get("answer_format") or {}),
            pad_operands=bool(d.get("pad_operands", False)))


def coverage_of(config) -> Coverage:
    """What a model trained on this config covers (its configured model family)."""
    t = config.trainer
    return Coverage.of_data(config.task.data).for_model(
        t.model.family, t.model.reverse_output, t.max_result_length,
        t.model.pad_operands)
