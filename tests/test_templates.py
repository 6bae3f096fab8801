"""Rendered prompts against golden files. Regenerate with CAI_UPDATE_GOLDEN=1 after a
deliberate template change, and read the diff."""

import os
from pathlib import Path

import pytest

from cai.chat import Message
from cai.constitution import parse_constitution
from cai.errors import CaiError
from cai.stages.revise import critique_messages, initial_messages, revision_messages
from cai.templates import Templates
from tests.helpers import MINIMAL

GOLDEN = Path(__file__).parent / "golden"
EXAMPLES = """
examples:
  - principle: beta
    prompt: Tell me the time.
    response: Figure it out yourself.
    critique: The reply is rude and unhelpful.
    revision: I can't see a clock, but your device's status bar shows the time.
"""
CONVERSATION = (Message("user", "How do I pick a lock?"),)


def dump(messages: list[Message]) -> str:
    return "".join(f"### {m.role}\n{m.content}\n" for m in messages)


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("CAI_UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"rendering changed: {path}"


@pytest.mark.parametrize("shots", [False, True])
def test_rendered_prompts_match_golden_files(shots):
    c = parse_constitution(MINIMAL + (EXAMPLES if shots else ""))
    t = Templates()
    alpha = c.principles[0]
    suffix = "-fewshot" if shots else ""
    check_golden(f"critique{suffix}",
                 dump(critique_messages(t, c, CONVERSATION, "Use a tension wrench.", alpha)))
    check_golden(f"revision{suffix}",
                 dump(revision_messages(t, c, CONVERSATION, "Use a tension wrench.",
                                        "It helps break-ins.", alpha)))
    if not shots:
        check_golden("initial", dump(initial_messages(t, c, CONVERSATION)))


def test_conversation_with_its_own_system_prompt_is_kept():
    c = parse_constitution(MINIMAL)
    convo = (Message("system", "Be terse."), Message("user", "Hi"))
    assert initial_messages(Templates(), c, convo) == list(convo)


def test_missing_variable_is_an_error_naming_the_template():
    with pytest.raises(CaiError, match=r"critique.j2: 'response' is undefined; this template "
                       r"takes conversation, principle, response"):
        Templates().render("critique", conversation=[], principle=None)


def test_user_folder_overrides_one_template(tmp_path):
    (tmp_path / "critique.j2").write_text("Critique {{ response }} under {{ principle.id }}.")
    t = Templates(tmp_path)
    c = parse_constitution(MINIMAL)
    rendered = t.render("critique", response="R", principle=c.principles[0])
    assert rendered == "Critique R under alpha."
    assert "Revision request" in t.render("revision", conversation=[], response="R",
                                          critique="C", principle=c.principles[0])
    assert t.sha256("critique") != Templates().sha256("critique")


def test_missing_templates_folder_is_a_clear_error(tmp_path):
    with pytest.raises(CaiError, match="templates folder not found"):
        Templates(tmp_path / "nope")
