"""Sources and sinks: files (JSONL, CSV, Parquet) and Kafka. Installed as ``streamlearn.connectors``."""
