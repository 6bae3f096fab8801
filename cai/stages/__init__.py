"""The stages that make data: critique-and-revise, sampling, and the AI judge, each run over
many items by `stage.run_stage` (resumable, failure-tolerant, with a summary)."""
