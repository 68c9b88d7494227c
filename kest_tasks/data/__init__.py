"""Data: sources (CSV, Parquet, TFRecord, NPZ, TFDS), schema and statistics, validation, the prepare stage that
writes TFRecords, and the tf.data reader every later stage parses them with."""
