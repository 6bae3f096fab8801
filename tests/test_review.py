"""`cai review`: the page's API on a real server on 127.0.0.1, the statistics on made-up labels,
hostile text, and a real headless browser labelling by keyboard."""

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from cai.evals.calibration import wilson
from cai.records import read_jsonl, write_jsonl
from cai.review.pairs import append
from cai.review.stats import review_stats
from tests.conftest import free_port

HOSTILE = ["<script>window.pwned = 1</script>Hello",
           '<img src=x onerror="window.pwned = 2"> an image']


def reply(text):
    return [{"role": "assistant", "content": text}]


def judged(i, principle="alpha", x="a fine answer", y="a worse answer"):
    return {"id": f"q{i}", "pair_id": f"p{i}", "prompt": [{"role": "user", "content": f"Q{i}?"}],
            "chosen": reply(x), "rejected": reply(y), "soft_label": 0.8, "margin": 0.6,
            "principles": [principle],
            "constitution": {"name": "harmless", "version": "1.0", "sha256": "not-it"}}


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "judge"
    write_jsonl(d / "prefs.jsonl", [judged(1), judged(2), judged(3, "beta")])
    write_jsonl(d / "low_margin.jsonl", [judged(4, "beta", *HOSTILE)])
    write_jsonl(d / "unjudged.jsonl", [{"id": "q5", "pair_id": "p5", "prompt": "Q5?",
                                        "responses": ["one", "two"], "pair": [0, 1]}])
    return d


class Server:
    def __init__(self, target, *args):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cai", "review", str(target), "--no-browser", "--port",
             str(self.port), "--reviewer", "alice", *map(str, args)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 30
        while True:
            try:
                self.get("/api/next")
                return
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    self.proc.kill()
                    raise AssertionError(self.proc.communicate()[1]) from None
                time.sleep(0.1)

    def request(self, path, body=None, headers=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, headers={
            "Content-Type": "application/json", **(headers or {})},
            method="GET" if body is None else "POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read()), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(), dict(e.headers)

    def get(self, path):
        return self.request(path)[1]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def server(folder):
    s = Server(folder)
    yield s
    s.stop()


def test_the_api_labels_blind_undoes_and_refuses_bad_requests(server, folder):
    first = server.get("/api/next")
    assert set(first) == {"pair_id", "prompt", "a", "b", "question", "progress", "token"}
    assert first["progress"] == {"done": 0, "total": 5}
    assert {first["a"], first["b"]} and "chosen" not in json.dumps(first)
    token = {"X-Review-Token": first["token"]}
    log = folder / "reviews.jsonl"
    for body, headers, status in [
        ({"pair_id": first["pair_id"], "choice": "a"}, {}, 403),  # no token
        ({"pair_id": first["pair_id"], "choice": "a"}, {"X-Review-Token": "wrong"}, 403),
        ({"pair_id": first["pair_id"], "choice": "maybe"}, token, 400),
        ({"pair_id": "no-such-pair", "choice": "a"}, token, 400),
    ]:
        code, text, _ = server.request("/api/label", body, headers)
        assert code == status and text, (body, headers)
        assert not log.exists()  # nothing written
    code, saved, headers = server.request("/api/label", {"pair_id": first["pair_id"],
                                                         "choice": "a"}, token)
    assert code == 200 and not any(h.lower().startswith("access-control") for h in headers)
    [line] = list(read_jsonl(log))
    assert line["pair_id"] == first["pair_id"] and line["reviewer"] == "alice"
    assert line["choice"] == "a" and line["order"] in ("xy", "yx") and line["time"]
    second = server.get("/api/next")
    assert second["pair_id"] != first["pair_id"] and second["progress"]["done"] == 1
    assert server.request("/api/undo", {}, token)[0] == 200
    assert server.get("/api/next")["pair_id"] == first["pair_id"]  # labelled again
    # A request for another host name (DNS rebinding) is refused.
    req = urllib.request.Request(server.url + "/api/next", headers={"Host": "evil.example"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=10)
    assert refused.value.code == 400


def test_stopping_and_restarting_loses_nothing(folder):
    s = Server(folder)
    try:
        pair = s.get("/api/next")
        s.request("/api/label", {"pair_id": pair["pair_id"], "choice": "b"},
                  {"X-Review-Token": pair["token"]})
    finally:
        s.stop()
    again = Server(folder)
    try:
        resumed = again.get("/api/next")
        assert resumed["progress"]["done"] == 1 and resumed["pair_id"] != pair["pair_id"]
        assert resumed["token"] != pair["token"]  # a new token each run
    finally:
        again.stop()


def test_an_empty_folder_and_a_port_in_use_are_one_error_line(tmp_path, folder, server):
    (tmp_path / "empty").mkdir()
    done = subprocess.run([sys.executable, "-m", "cai", "review", str(tmp_path / "empty"),
                           "--no-browser"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "no pairs to review" in done.stderr
    busy = subprocess.run([sys.executable, "-m", "cai", "review", str(folder),
                           "--no-browser", "--port", str(server.port)],
                          capture_output=True, text=True, timeout=60)
    assert busy.returncode == 2 and f"cannot serve on 127.0.0.1:{server.port}" in busy.stderr
    assert "Traceback" not in done.stderr + busy.stderr


def label(log, reviewer, pair, said, undo_first=None):
    """A label meaning `said` (x or y or tie), written as the page writes it."""
    if undo_first:
        append(log, {"event": "label", "pair_id": pair, "reviewer": reviewer, "order": "xy",
                     "choice": undo_first})
        append(log, {"event": "undo", "pair_id": pair, "reviewer": reviewer})
    choice = {"x": "a", "y": "b", "tie": "tie"}[said]
    append(log, {"event": "label", "pair_id": pair, "reviewer": reviewer, "order": "xy",
                 "choice": choice})


def test_stats_on_made_up_labels(folder):
    log = folder / "reviews.jsonl"
    for pair, said in [("p1", "x"), ("p3", "x"), ("p4", "tie"), ("p5", "x")]:
        label(log, "alice", pair, said)
    label(log, "alice", "p2", "y", undo_first="a")  # an undone label does not count
    for pair, said in [("p1", "x"), ("p2", "x"), ("p3", "y")]:
        label(log, "bob", pair, said)
    append(log, {"event": "label", "pair_id": "p4", "reviewer": "bob", "order": "yx",
                 "choice": "skip"})
    s = review_stats(folder)
    assert s["labelled"] == 8 and s["ties"] == 1 and s["reviewers"] == {"alice": 5, "bob": 3}
    # The judge chose x in p1-p4; people decided 6 of those: 4 agree.
    assert s["judge_decided"] == 6 and s["agreement_with_judge"] == round(4 / 6, 4)
    assert s["agreement_with_judge_ci95"] == [round(v, 4) for v in wilson(4, 6)]
    assert s["kappa"] == 0.0  # a judge that always says x agrees no better than chance
    assert s["by_principle"]["alpha"]["agreement_with_judge"] == 0.75
    assert s["by_principle"]["beta"]["agreement_with_judge"] == 0.5
    [between] = s["between_reviewers"]
    assert between == {"reviewers": ["alice", "bob"], "n": 3, "agreement": 0.3333,
                       "kappa": -0.5}
    gold = list(read_jsonl(folder / "gold.jsonl"))
    assert [g["id"] for g in gold] == ["p1", "p5"]  # p2, p3 split; p4 a tie
    assert gold[0]["chosen"] == reply("a fine answer") and gold[1]["chosen"] == reply("one")
    assert json.loads((folder / "review_stats.json").read_text())["gold_pairs"] == 2
    out = subprocess.run([sys.executable, "-m", "cai", "review", "stats", str(folder),
                          "--json"], capture_output=True, text=True, timeout=60)
    assert json.loads(out.stdout)["labelled"] == 8  # only JSON on stdout


def test_a_browser_labels_three_pairs_by_keyboard_and_runs_no_hostile_text(folder, browser,
                                                                            tmp_path):
    s = Server(folder)
    try:
        page = browser.new_page()
        page.goto(s.url + "/")
        page.wait_for_selector("#pair:not([hidden])")
        seen, hostile = [], 0
        for n, key in enumerate(("a", "b", "t", "s", "s")):
            page.wait_for_function("document.getElementById('a').textContent.length > 0")
            seen.append(page.locator("#progress").inner_text())
            text = page.locator(".replies").inner_text()
            if HOSTILE[0] in text:  # shown as characters, and nothing of it ran
                assert HOSTILE[1] in text and page.evaluate("window.pwned") is None
                assert page.locator(".replies script, .replies img").count() == 0
                hostile += 1
                page.screenshot(path=str(tmp_path / "review.png"), full_page=True)
            page.keyboard.press(key)
            if n < 4:
                page.wait_for_function(f"document.getElementById('progress').textContent"
                                       f".startsWith('{n + 1} of 5')")
        assert seen == [f"{n} of 5 labelled" for n in range(5)] and hostile == 1
        page.wait_for_selector("#done:not([hidden])")
        assert page.locator("#progress").inner_text() == "all labelled"
        assert set(s.get("/api/next")) == {"token"}  # the sample is done: the token alone
        page.close()
    finally:
        s.stop()
    labelled = [r for r in read_jsonl(folder / "reviews.jsonl") if r["choice"] != "skip"]
    assert [r["choice"] for r in labelled] == ["a", "b", "tie"]
    assert os.path.getsize(folder / "reviews.jsonl") > 0
