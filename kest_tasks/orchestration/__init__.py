"""Running the stages: the in-process runner (CLI), and what DAG files and the Airflow plugin may import at parse
time (trigger form, assets, links, worker placement) — none of it imports TensorFlow or Airflow."""
