"""The data layer: prompt and record files cleaned for training (`cai data ...`)."""
