"""The bad-input table: one row per (reader, input class), each a `cai` command on files a
careless or hostile user could give it. Every row must end in exit 2 with one `error:` line
that names the file (and line), no traceback, and nothing that was there changed.

The rows are data, shared by tests/test_bad_input.py (which runs them in-process, a few
through a real subprocess) and benchmarks/bad_inputs.py (which runs every row in a
subprocess against any checkout, to count what a version of cai does with them).

A row's files are written into an empty folder, the command runs there; `{ro}` in its argv
is a folder nobody may write to, `{full}` one on a full disk (both need the fixtures of the
test, or root for the benchmark).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.helpers import MINIMAL

Content = str | bytes | Callable[[], bytes]


@dataclass(frozen=True)
class Case:
    reader: str  # what reads the input: `prompts.jsonl (cai sample)`
    kind: str  # the input class: `wrong type`, `YAML bomb`, ...
    argv: tuple[str, ...]
    names: str  # what the error line must name: `p.jsonl:2`, or the file alone
    files: dict[str, Content] = field(default_factory=dict)
    setup: tuple[tuple[str, ...], ...] = ()  # commands that must succeed first
    needs: str | None = None  # "ro": an unwritable folder; "full": a full disk
    subprocess: bool = False  # run in a real process (a bomb: under a memory limit)
    partial_ok: bool = False  # a full disk mid-run: whole records may stay, none cut short

    @property
    def id(self) -> str:
        return f"{self.reader}: {self.kind}"


def jl(*rows: dict | str) -> str:
    """JSON lines: dicts as JSON, strings as written."""
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


def long_line(prefix: str, size: int = 20_000_000) -> Callable[[], bytes]:
    """A second line of `size` bytes, made when the row runs, not when the table is read."""
    return lambda: (prefix + "\n" + '{"prompt": "' + "a" * size + '"}\n').encode()


NUL_BINARY = b"PK\x03\x04\x14\x00\x00\x00\x08\x00" * 20  # a zip header: ASCII with NULs
GZIP = gzip.compress(b'{"prompt": "hello"}\n' * 50)
DEEP = "[" * 100_000 + "]" * 100_000
BOM = "\ufeff"
FAKE = ("--model", "fake:echo", "--no-cache")
JUDGE = ("--judge", "fake:fixed:A", "--no-cache")


def jsonl_cases(reader: str, name: str, argv: tuple[str, ...], good: dict, field_: str,
                empty: str | None = "", skip: tuple[str, ...] = (),
                extra: dict[str, Content] | None = None) -> list[Case]:
    """The input classes of a JSONL reader, from one good row and the field to break."""
    g = json.dumps(good)
    missing = {k: v for k, v in good.items() if k != field_}
    wrong = {**good, field_: 17}
    classes: list[tuple[str, Content, str]] = [
        ("missing", "", name),
        ("a folder", "", name),
        ("empty", "", name),
        ("binary", NUL_BINARY, f"{name}:1"),
        ("gzip", GZIP, f"{name}:1"),
        ("not UTF-8", g.encode() + b"\n" + g.replace("}", ', "x": "caf\xe9"}').encode("latin-1")
         + b"\n", f"{name}:2"),
        ("a bad line in the middle", jl(good, "{not json", good), f"{name}:2"),
        ("a missing field", jl(good, missing), f"{name}:2"),
        ("a wrong type", jl(good, wrong), f"{name}:2"),
        ("a 20 MB line", long_line(g), f"{name}:2"),
        ("BOM", (BOM + jl(good, wrong)).encode(), f"{name}:2"),
        ("CRLF", jl(good, wrong).replace("\n", "\r\n"), f"{name}:2"),
        ("a huge number", jl(good, g[:-1] + ', "x": 1e999}'), f"{name}:2"),
        ("a 5,000-digit number", jl(good, g[:-1] + ', "x": ' + "9" * 5000 + "}"), f"{name}:2"),
        ("deep nesting", jl(good, g[:-1] + f', "x": {DEEP}}}'), f"{name}:2"),
        ("a duplicate key", jl(good, g[:-1] + f', "{field_}": {json.dumps(good[field_])}}}'),
         f"{name}:2"),
    ]
    cases = []
    for kind, content, names in classes:
        if kind in skip or (kind == "empty" and empty is None):
            continue
        files = dict(extra or {})
        if kind == "a folder":
            files[f"{name}/x"] = ""
        elif kind != "missing":
            files[name] = content
        cases.append(Case(reader, kind, argv, names, files))
    return cases


YAML_BOMB = ("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
             + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n"
                       for i in range(9)))
TAG = "!!python/object/apply:os.system ['echo pwned > pwned.txt']"


def yaml_cases(reader: str, name: str, argv: tuple[str, ...], good: str,
               broken: dict[str, tuple[str, int | str]], extra: dict[str, Content] | None = None,
               subprocess_bombs: bool = False) -> list[Case]:
    """The input classes of a YAML reader. `broken` maps input classes to (text, line) made
    from the good text (a missing field, a wrong type, an unknown key, a duplicate key); the
    line 0 where the problem has none, or what the error names when it is another file."""
    first = good.splitlines()[0]
    classes: list[tuple[str, Content, str]] = [
        ("missing", "", name),
        ("a folder", "", name),
        ("empty", "", name),
        ("binary", NUL_BINARY, f"{name}:1"),
        ("not UTF-8", (good + "# caf\xe9\n").encode("latin-1"),
         f"{name}:{good.count(chr(10)) + 1}"),
        ("invalid YAML", good + "x: [unclosed\n", f"{name}:{good.count(chr(10)) + 1}"),
        ("a YAML bomb (aliases)", good + YAML_BOMB, f"{name}:{good.count(chr(10)) + 1}"),
        ("an object tag", good + f"x: {TAG}\n", f"{name}:{good.count(chr(10)) + 1}"),
        ("a 5,000-digit number", good + "x: " + "9" * 5000 + "\n",
         f"{name}:{good.count(chr(10)) + 1}"),
        ("deep nesting", good + "x: " + DEEP + "\n", f"{name}:{good.count(chr(10)) + 1}"),
        ("a 20 MB line", (first + "\n# " + "a" * 20_000_000 + "\n").encode(), name),
        ("BOM", (BOM + good + "x: [unclosed\n").encode(), f"{name}:{good.count(chr(10)) + 1}"),
        ("CRLF", (good + "x: [unclosed\n").replace("\n", "\r\n"),
         f"{name}:{good.count(chr(10)) + 1}"),
    ]
    classes += [(kind, text, line if isinstance(line, str) else f"{name}:{line}")
                for kind, (text, line) in broken.items()]
    cases = []
    for kind, content, names in classes:
        files = dict(extra or {})
        if kind == "a folder":
            files[f"{name}/x"] = ""
        elif kind != "missing":
            files[name] = content
        bomb = subprocess_bombs and "YAML bomb" in kind
        cases.append(Case(reader, kind, argv, names, files, subprocess=bomb))
    return cases


def csv_cases(reader: str, name: str, argv: tuple[str, ...]) -> list[Case]:
    good = "id,prompt\na,Hello\n"
    return [Case(reader, kind, argv, names, {name: content}) for kind, content, names in [
        ("empty", "", name),
        ("binary", NUL_BINARY, f"{name}:1"),
        ("not UTF-8", (good + "b,caf\xe9\n").encode("latin-1"), f"{name}:3"),
        ("wrong CSV columns", "id,text\na,Hello\n", f"{name}:1"),
        ("a row with more fields than the header", good + "b,Hi,extra\n", f"{name}:3"),
        ("a row with fewer fields than the header", good + "b\n", f"{name}:3"),
        ("an unclosed quote", good + 'b,"Hi\n', f"{name}:3"),
        ("a 20 MB line", lambda: (good + "b," + "a" * 20_000_000 + "\n").encode(), f"{name}:3"),
        ("BOM", (BOM + good + "b,Hi,extra\n").encode(), f"{name}:3"),
        ("CRLF", (good + "b,Hi,extra\n").replace("\n", "\r\n"), f"{name}:3"),
    ]]


# ---------------------------------------------------------------- the readers

PROMPT = {"id": "p1", "prompt": "Hello there"}
SAMPLE = ("sample", "--prompts", "p.jsonl", *FAKE, "--out", "out")
LOOP = """policy: local
prompts:
  file: prompts.jsonl
iterations: 2
training:
  method: sft
  trl:
    max_steps: 2
constitution: harmless
"""
TRAIN = "trl:\n  max_steps: 2\n  learning_rate: 0.0001\nlora:\n  r: 8\n"
SFT = {"prompt": "Q?", "completion": "A."}
PAIR = {"prompt": "Q?", "chosen": "Good.", "rejected": "Bad."}
LABEL = {"event": "label", "pair_id": "q1", "reviewer": "ann", "order": "xy", "choice": "a"}


def cases() -> list[Case]:
    table: list[Case] = []
    table += jsonl_cases("prompts.jsonl (cai sample)", "p.jsonl", SAMPLE, PROMPT, "prompt")
    table += [
        Case("prompts.jsonl (cai sample)", "an id given as a list", SAMPLE, "p.jsonl:2",
             {"p.jsonl": jl(PROMPT, {"id": [1, 2], "prompt": "x"})}),
        Case("prompts.jsonl (cai sample)", "a conversation without content", SAMPLE,
             "p.jsonl:1", {"p.jsonl": jl({"messages": [{"role": "user"}]})}),
        Case("prompts.jsonl (cai sample)", "NaN", SAMPLE, "p.jsonl:1",
             {"p.jsonl": '{"prompt": "x", "w": NaN}\n'}),
    ]
    table += csv_cases("prompts.csv (cai sample)", "p.csv",
                       ("sample", "--prompts", "p.csv", *FAKE, "--out", "out"))
    txt = ("sample", "--prompts", "p.txt", *FAKE, "--out", "out")
    table += [Case("prompts.txt (cai sample)", kind, txt, names, {"p.txt": content})
              for kind, content, names in [
                  ("empty", "\n\n", "p.txt"), ("binary", NUL_BINARY, "p.txt:1"),
                  ("not UTF-8", b"Hello\ncaf\xe9\n", "p.txt:2"),
                  ("a 20 MB line", lambda: b"Hello\n" + b"a" * 20_000_000 + b"\n", "p.txt:2")]]
    table += jsonl_cases("responses (cai judge)", "r.jsonl",
                         ("judge", "--responses", "r.jsonl", *JUDGE, "--out", "out"),
                         {"id": "q1", "prompt": "Q?", "responses": ["a", "b"]}, "responses")
    table += [Case("responses (cai judge)", "responses as one string",
                   ("judge", "--responses", "r.jsonl", *JUDGE, "--out", "out"), "r.jsonl:1",
                   {"r.jsonl": jl({"prompt": "Q?", "responses": "one string"})})]
    table += jsonl_cases("gold pairs (cai eval judge)", "g.jsonl",
                         ("eval", "judge", "--data", "g.jsonl", *JUDGE, "--out", "out"),
                         PAIR, "chosen")
    table += jsonl_cases("answers (cai eval policy)", "a.jsonl",
                         ("eval", "policy", "--responses", "a.jsonl", "--out", "out"),
                         {"id": "1", "prompt": "Q?", "response": "A."}, "response")
    table += [Case("answers (cai eval policy)", "an unknown kind",
                   ("eval", "policy", "--responses", "a.jsonl", "--out", "out"), "a.jsonl:1",
                   {"a.jsonl": jl({"id": "1", "prompt": "Q?", "response": "A.",
                                   "kind": "maybe"})})]
    table += jsonl_cases("sft data (cai train sft)", "d.jsonl",
                         ("train", "sft", "--data", "d.jsonl", "--out", "out"), SFT,
                         "completion")
    table += [
        Case("sft data (cai train sft)", "a prompt given as a number",
             ("train", "sft", "--data", "d.jsonl", "--out", "out"), "d.jsonl:2",
             {"d.jsonl": jl(SFT, {**SFT, "prompt": 17})}),
        Case("dpo data (cai train dpo)", "a chosen given as a number",
             ("train", "dpo", "--data", "d.jsonl", "--out", "out"), "d.jsonl:2",
             {"d.jsonl": jl(PAIR, {**PAIR, "chosen": 3})}),
        Case("dpo data (cai train dpo)", "a soft label above 1",
             ("train", "dpo", "--data", "d.jsonl", "--out", "out"), "d.jsonl:1",
             {"d.jsonl": jl({**PAIR, "soft_label": 1.5})}),
    ]
    table += jsonl_cases("rows (cai data dedup)", "d.jsonl",
                         ("data", "dedup", "d.jsonl", "--out", "kept.jsonl"), PROMPT, "prompt")
    table += csv_cases("rows.csv (cai data dedup)", "d.csv",
                       ("data", "dedup", "d.csv", "--out", "kept.jsonl"))
    pair = {"pair_id": "q1", "prompt": "Q?", "chosen": "a", "rejected": "b"}
    table += jsonl_cases("review labels (cai review stats)", "prefs.reviews.jsonl",
                         ("review", "stats", "prefs.jsonl"), LABEL, "choice", empty=None,
                         skip=("missing", "a folder"), extra={"prefs.jsonl": jl(pair)})
    table += [
        Case("review labels (cai review stats)", "a choice of 'maybe'",
             ("review", "stats", "prefs.jsonl"), "prefs.reviews.jsonl:1",
             {"prefs.jsonl": jl(pair), "prefs.reviews.jsonl": jl({**LABEL, "choice": "maybe"})}),
        Case("review labels (cai review stats)", "a row without a reviewer",
             ("review", "stats", "prefs.jsonl"), "prefs.reviews.jsonl:1",
             {"prefs.jsonl": jl(pair), "prefs.reviews.jsonl": jl(
                 {k: v for k, v in LABEL.items() if k != "reviewer"})}),
    ]
    table += jsonl_cases("pairs under review (cai review stats)", "prefs.jsonl",
                         ("review", "stats", "prefs.jsonl"), pair, "chosen",
                         skip=("missing", "a folder", "empty", "a missing field"))
    table += jsonl_cases("command log (cai report)", "out/command_log.jsonl",
                         ("report", "out"), {"command": "cai sample", "cwd": "."}, "command",
                         empty=None, skip=("missing", "a folder"),
                         extra={"out/sft.jsonl": jl(SFT)})
    table += [Case("suite (cai eval policy)", "a kind given as a number",
                   ("eval", "policy", "--suite", "s.jsonl", *FAKE, "--out", "out"), "s.jsonl:2",
                   {"s.jsonl": jl(PROMPT, {"prompt": "x", "kind": 5})})]
    table += [Case("topics (cai data prompts)", kind,
                   ("data", "prompts", "--n", "2", "--topics", "t.txt", *FAKE, "--out", "out"),
                   names, {"t.txt": content}) for kind, content, names in [
                       ("binary", NUL_BINARY, "t.txt:1"),
                       ("not UTF-8", b"cooking\ncaf\xe9\n", "t.txt:2")]]
    table += [Case("templates (cai prompts list)", kind,
                   ("prompts", "list", "--templates", "tpl"), "tpl/critique.j2",
                   {"tpl/critique.j2": content}) for kind, content in [
                       ("not valid Jinja", "{# a template #}\n{% if %}\n"),
                       ("not text", b"\xff\xfe\x00binary")]]

    # ------------------------------------------------------------ YAML
    c, end = MINIMAL, MINIMAL.count("\n") + 1  # the line after the last
    table += yaml_cases("constitution (cai constitution show)", "c.yaml",
                        ("constitution", "show", "c.yaml"), c, {
                            "a missing field": (c.replace("name: tiny\n", ""), 1),
                            "a wrong type": (c.replace("Fix it.", "[a, b]"), 7),
                            "a weight of 10^400": (c + "    weight: 1" + "0" * 400 + "\n", end),
                            "a weight of 1e400": (c + "    weight: 1.0e+400\n", end),
                            "an unknown key": (c + "colour: blue\n", end),
                            "a duplicate key": (c.replace("description:", "description: x\n"
                                                          "description:"), 4)},
                        subprocess_bombs=True)
    table += [
        Case("constitution (cai revise)", "a YAML bomb (aliases)",
             ("revise", "--prompts", "p.jsonl", "--constitution", "c.yaml", *FAKE, "--out",
              "out"), f"c.yaml:{end}", {"p.jsonl": jl(PROMPT), "c.yaml": c + YAML_BOMB},
             subprocess=True),
        Case("constitution (cai constitution lint)", "a YAML bomb (aliases)",
             ("constitution", "lint", "c.yaml"), f"c.yaml:{end}", {"c.yaml": c + YAML_BOMB},
             subprocess=True),
    ]
    loop_files: dict[str, Content] = {"prompts.jsonl": jl(PROMPT)}
    table += yaml_cases("loop config (cai loop)", "l.yaml", ("loop", "l.yaml", "--out", "run"),
                        LOOP, {
                            "a missing field": (LOOP.replace("prompts:\n  file: prompts.jsonl\n",
                                                             ""), 1),
                            "a wrong type": (LOOP.replace("iterations: 2", "iterations: many"),
                                             4),
                            "iterations: 1 and 400 zeros": (
                                LOOP.replace("iterations: 2", "iterations: 1" + "0" * 400), 4),
                            "an unknown key": (LOOP + "colour: blue\n", 10),
                            "an empty panel of judges": (LOOP + "judge: []\n", 10),
                            "one judge twice in the panel": (
                                LOOP + "judge: [local, local]\n", 10),
                            "a duplicate key": (LOOP + "iterations: 3\n", 10),
                            "a missing constitution": (LOOP.replace("harmless", "nothing.yaml"),
                                                       "nothing.yaml"),
                            "a bad prompt file": (LOOP.replace("prompts.jsonl", "bad.jsonl"),
                                                  "bad.jsonl:2"),
                            "a YAML bomb under training.trl": (LOOP.replace(
                                "    max_steps: 2\n", "".join(
                                    "    " + line + "\n" for line in YAML_BOMB.splitlines())),
                                8),
                            "max_steps: lots under training.trl": (
                                LOOP.replace("max_steps: 2", "max_steps: lots"), 8)},
                        extra={**loop_files, "bad.jsonl": jl(PROMPT, {"prompt": 17})},
                        subprocess_bombs=True)
    t = TRAIN
    table += yaml_cases("training config (cai train sft)", "t.yaml",
                        ("train", "sft", "--data", "d.jsonl", "--config", "t.yaml", "--out",
                         "out"), t, {
                            "max_steps: lots": (t.replace("max_steps: 2", "max_steps: lots"), 2),
                            "a list as batch size": (t.replace(
                                "lora:", "  per_device_train_batch_size: [1, 2]\nlora:"), 4),
                            "learning_rate: -1": (t.replace("0.0001", "-1"), 3),
                            "learning_rate: 10^400": (t.replace("0.0001", "1" + "0" * 400), 3),
                            "an unknown key": (t.replace("max_steps", "max_stepz"), 2),
                            "a duplicate key": (t.replace("lora:", "  max_steps: 3\nlora:"), 4),
                            "a missing section": ("trll:\n  max_steps: 2\n", 1)},
                        extra={"d.jsonl": jl(SFT)})
    table += yaml_cases("prices (--prices)", "prices.yaml",
                        ("sample", "--prompts", "p.jsonl", *FAKE, "--prices", "prices.yaml",
                         "--out", "out"), "my-model: {input: 1.0, output: 2.0}\n", {
                            "a wrong type": ("my-model: {input: cheap, output: 2.0}\n", 0)},
                        extra={"p.jsonl": jl(PROMPT)})
    return [_fix_lines(c) for c in table] + output_cases()


def _fix_lines(case: Case) -> Case:
    """Rows whose problem is found with no line (line 0 above) name the file alone."""
    name, _, line = case.names.rpartition(":")
    if name and line == "0":
        return Case(**{**case.__dict__, "names": name})
    return case


# ---------------------------------------------------------------- output folders

PROMPTS2 = jl(PROMPT, {"id": "p2", "prompt": "Another one"})
OTHER = jl({"id": "p9", "prompt": "Something else"})


def output_cases() -> list[Case]:
    p = {"p.jsonl": PROMPTS2}
    answers_a = jl({"id": "1", "prompt": "Q?", "response": "I cannot help with that.",
                    "kind": "safe"})
    answers_b = jl({"id": "1", "prompt": "Q?", "response": "Sure, here it is.",
                    "kind": "safe"})
    judge = ("judge", "--responses", "r.jsonl", *JUDGE)
    responses = jl({"id": "q1", "prompt": "Q?", "responses": ["a", "b"]})
    commands = {
        "cai sample": (("sample", "--prompts", "p.jsonl", *FAKE, "--out"), p),
        "cai revise": (("revise", "--prompts", "p.jsonl", *FAKE, "--out"), p),
        "cai judge": ((*judge, "--out"), {"r.jsonl": responses}),
        "cai eval judge": (("eval", "judge", "--data", "g.jsonl", *JUDGE, "--out"),
                           {"g.jsonl": jl(PAIR)}),
        "cai eval policy": (("eval", "policy", "--responses", "a.jsonl", "--out"),
                            {"a.jsonl": answers_a}),
        "cai data prompts": (("data", "prompts", "--n", "2", *FAKE, "--out"), {}),
        "cai constitution diff": (("constitution", "diff", "harmless", "harmless",
                                   "--prompts", "p.jsonl", *FAKE, "--evaluator", "fake:echo",
                                   "--out"), p),
        "cai train sft": (("train", "sft", "--data", "d.jsonl", "--out"),
                          {"d.jsonl": jl(SFT)}),
        "cai data dedup": (("data", "dedup", "p.jsonl", "--out"), p),
    }
    table = []
    for command, (argv, files) in commands.items():
        target = "kept.jsonl" if command == "cai data dedup" else "out"
        table.append(Case(f"output of {command}", "an unwritable output folder",
                          (*argv, f"{{ro}}/{target}"), "{ro}", files, needs="ro"))
        table.append(Case(f"output of {command}", "an output path under a file",
                          (*argv, f"under/{target}"), "under", {**files, "under": "a file\n"}))
    table += [
        Case("output of cai data dedup", "a full disk",
             ("data", "dedup", "big.jsonl", "--out", "{full}/kept.jsonl"), "{full}/kept",
             {"big.jsonl": jl(*({"id": f"r{i}", "prompt": f"prompt number {i} " + "w " * 40}
                                for i in range(2000)))}, needs="full"),
        Case("output of cai sample", "a full disk mid-run",
             ("sample", "--prompts", "big.jsonl", *FAKE, "--concurrency", "1", "--out",
              "{full}/out"), "{full}/out",
             {"big.jsonl": jl(*({"id": f"r{i}", "prompt": f"prompt number {i} " + "w " * 40}
                                for i in range(400)))}, needs="full", partial_ok=True),
    ]
    first = ("sample", "--prompts", "p.jsonl", *FAKE, "--out", "out")
    table += [
        Case("settings.json (cai sample)", "a rerun with other inputs",
             ("sample", "--prompts", "q.jsonl", *FAKE, "--out", "out"), "out",
             {**p, "q.jsonl": OTHER}, setup=(first,)),
        Case("settings.json (cai revise)", "a rerun with other inputs",
             ("revise", "--prompts", "q.jsonl", *FAKE, "--out", "out"), "out",
             {**p, "q.jsonl": OTHER},
             setup=(("revise", "--prompts", "p.jsonl", *FAKE, "--out", "out"),)),
        Case("settings.json (cai eval policy)", "a rerun with other answers",
             ("eval", "policy", "--responses", "b.jsonl", "--out", "out"), "out",
             {"a.jsonl": answers_a, "b.jsonl": answers_b},
             setup=(("eval", "policy", "--responses", "a.jsonl", "--out", "out"),)),
        Case("settings.json (cai eval policy)", "the same answers file, edited",
             ("eval", "policy", "--responses", "a.jsonl", "--out", "out"), "out",
             {"a.jsonl": answers_a},
             setup=(("eval", "policy", "--responses", "a.jsonl", "--out", "out"),
                    ("!write", "a.jsonl", answers_b))),
        Case("settings.json (cai judge)", "another command's folder",
             (*judge, "--out", "out"), "out", {**p, "r.jsonl": responses}, setup=(first,)),
        Case("settings.json (cai train sft)", "another command's folder",
             ("train", "sft", "--data", "d.jsonl", "--out", "out"), "out",
             {**p, "d.jsonl": jl(SFT)}, setup=(first,)),
        Case("settings.json (cai sample)", "a corrupt settings.json",
             first, "out/settings.json", {**p, "out/settings.json": '{"sample": {"mod',
                                          "out/responses.jsonl": ""}),
        Case("settings.json (cai sample)", "a folder cai did not make",
             first, "out", {**p, "out/notes.txt": "mine\n"}),
        Case("target (cai data merge)", "a judge folder as the target",
             ("data", "merge", "s1", "s2", "--out", "j"), "j",
             {**p, "r.jsonl": responses},
             setup=(("sample", "--prompts", "p.jsonl", *FAKE, "--shard", "1/2", "--out", "s1"),
                    ("sample", "--prompts", "p.jsonl", *FAKE, "--shard", "2/2", "--out", "s2"),
                    (*judge, "--out", "j"))),
        Case("batches.json (cai batch status)", "a corrupt batches.json",
             ("batch", "status", "--out", "out"), "out/batches.json",
             {"out/batches.json": '{"version": 1, "batches": [{"id": "b'}),
        Case("shard.json (cai data merge)", "a corrupt shard.json",
             ("data", "merge", "s1", "s2", "--out", "m"), "s2/shard.json", p,
             setup=(("sample", "--prompts", "p.jsonl", *FAKE, "--shard", "1/2", "--out", "s1"),
                    ("sample", "--prompts", "p.jsonl", *FAKE, "--shard", "2/2", "--out", "s2"),
                    ("!write", "s2/shard.json", '{"k": 2, "n"'))),
    ]
    return table
