"""Ray Data pipelines: a sorted manifest cut into shards, each written once as Parquet."""
