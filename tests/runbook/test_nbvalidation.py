"""nbformat's checks of an output or a cell, at fastjsonschema's speed: the same verdicts and errors.

The runner installs :mod:`psbridge.runbook.nbvalidation` as it imports its papermill engine; these
tests compare each verdict with nbformat's own (jsonschema) check of the same part.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import nbformat
import pytest
from nbformat import validator as nbvalidator
from nbformat.json_compat import FastJsonSchemaValidator, JsonSchemaValidator

from psbridge.runbook import nbvalidation

VALID: list[tuple[str, dict[str, Any]]] = [
    ("output", {"output_type": "stream", "name": "stdout", "text": "a line\n"}),
    ("output", {"output_type": "display_data", "metadata": {},
                "data": {"text/html": "<table></table>", "text/plain": "a table"}}),
    ("output", {"output_type": "execute_result", "metadata": {}, "data": {"text/plain": "1"},
                "execution_count": 3}),
    ("output", {"output_type": "error", "ename": "StepError", "evalue": "no", "traceback": ["x"]}),
    ("code_cell", {"cell_type": "code", "id": "abc", "metadata": {"tags": ["injected-parameters"]},
                   "source": "x = 1\n", "outputs": [], "execution_count": None}),
]
INVALID: list[tuple[str, dict[str, Any]]] = [
    ("output", {"output_type": "stream", "name": "stdout", "text": 3}),
    ("output", {"output_type": "stream", "text": "no name"}),
    ("output", {"output_type": "display_data", "metadata": {}, "data": {"text/plain": 5}}),
    ("output", {"output_type": "execute_result", "metadata": {}, "data": {}, "execution_count": "x"}),
    ("output", {"output_type": "error", "ename": "E", "evalue": "v", "traceback": "not a list"}),
    ("output", {"output_type": "a kind nbformat does not know"}),
    ("code_cell", {"cell_type": "code", "id": "abc", "metadata": {}, "source": 5, "outputs": [],
                   "execution_count": None}),
]


@pytest.fixture(autouse=True)
def installed() -> Iterator[None]:
    assert nbvalidation.install()
    yield


def _shipped_error(part: dict[str, Any], ref: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The error nbformat raises for ``part`` with its own fastjsonschema validator in the cache."""
    ours = nbvalidator.get_validator(version=4)
    with monkeypatch.context() as m:
        for key, cached in list(nbvalidator.validators.items()):
            if cached is ours:
                m.setitem(nbvalidator.validators, key, FastJsonSchemaValidator(ours._schema))
        with pytest.raises(nbformat.ValidationError) as raised:
            nbformat.validate(part, ref=ref, version=4)
    assert nbvalidator.get_validator(version=4) is ours
    return raised.value


def test_nbformat_hands_out_the_faster_validator_for_v4() -> None:
    assert isinstance(nbvalidator.get_validator(version=4), nbvalidation.DefinitionsToo)
    assert nbvalidation.install()  # again: nothing changes


@pytest.mark.parametrize(("ref", "part"), VALID, ids=[f"{r}-{i}" for i, (r, _) in enumerate(VALID)])
def test_a_valid_part_passes_without_jsonschema(ref: str, part: dict[str, Any],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*a: object, **kw: object) -> None:
        raise AssertionError("a valid part went to jsonschema")

    monkeypatch.setattr(JsonSchemaValidator, "iter_errors", refuse)
    nbformat.validate(part, ref=ref, version=4)


@pytest.mark.parametrize(("ref", "part"), INVALID, ids=[f"{r}-{i}" for i, (r, _) in enumerate(INVALID)])
def test_an_invalid_part_fails_with_nbformats_own_error(ref: str, part: dict[str, Any],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    expected = _shipped_error(part, ref, monkeypatch)
    with pytest.raises(nbformat.ValidationError) as raised:
        nbformat.validate(part, ref=ref, version=4)
    assert raised.value.message == expected.message
    assert list(raised.value.schema_path) == list(expected.schema_path)
    assert str(raised.value) == str(expected)


def test_outputs_built_from_kernel_messages_are_checked() -> None:
    msg = {"header": {"msg_type": "stream"}, "content": {"name": "stdout", "text": "hello\n"}}
    assert nbformat.v4.output_from_msg(msg)["text"] == "hello\n"
    msg["content"]["text"] = 7
    with pytest.raises(nbformat.ValidationError):
        nbformat.v4.output_from_msg(msg)


def test_a_whole_notebook_is_checked_as_before() -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_markdown_cell("# a step")]
    nbformat.validate(nb)
    nb.cells[0]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": 3}]
    with pytest.raises(nbformat.ValidationError):
        nbformat.validate(nb)


def test_nothing_is_replaced_where_jsonschema_was_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBFORMAT_VALIDATOR", "jsonschema")
    assert not nbvalidation.install()
    assert type(nbvalidator.get_validator(version=4)) is JsonSchemaValidator
