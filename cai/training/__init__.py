"""Training with TRL on cai's data: configs, data, soft-label DPO, checkpoints, model cards."""
