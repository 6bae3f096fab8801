"""cai from Python: critique-and-revise two prompts, then judge the (revision, initial) pairs,
all on the embedded model. Run from the repository root:

    .venv/bin/python examples/python_api.py

It writes out/py/revise/ and out/py/judge/, as `cai revise` and `cai judge` would.
"""

import asyncio
from pathlib import Path

import cai


async def main() -> None:
    session = cai.Session()  # one cache, budget and limits for every client below
    # One client serves all three roles; logprobs=True lets the judge read soft labels.
    model = session.client("local", logprobs=True)
    constitution = cai.load_constitution("constitutions/harmless.yaml")
    prompts = cai.read_prompts("examples/prompts.jsonl", limit=2)
    try:
        reviser = cai.Reviser(constitution, model, model, cai.Templates(), rounds=1)
        revised = await cai.revise(prompts, reviser, Path("out/py/revise"), session=session)
        print("revise:", revised.summary["done"], "done")
        judge = cai.Judge(model, cai.Templates(), constitution)
        pairs = cai.read_candidates(Path("out/py/revise/prefs.jsonl"))
        judged = await cai.judge(pairs, judge, Path("out/py/judge"), session=session)
        print("judge:", judged.summary["judge"])
    finally:
        await session.close()


if __name__ == "__main__":
    asyncio.run(main())
