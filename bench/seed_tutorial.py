"""The baseline for P5: the seed's tutorial as one bare script (import, convert, train 500 steps, evaluate).

Run as `python bench/seed_tutorial.py <model_dir>`; reads the bundled kest_tasks/configs/iris.csv like kest does.
"""

import csv
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import tensorflow as tf

CLASSES = ["setosa", "versicolor", "virginica"]


def main(model_dir: str) -> None:
    rows = list(csv.reader(open(Path(__file__).resolve().parent.parent / "kest_tasks" / "configs" / "iris.csv")))[1:]
    features = np.array([[float(v) for v in row[:4]] for row in rows], dtype=np.float32)
    labels = np.array([CLASSES.index(row[4]) for row in rows], dtype=np.int64)
    model = tf.keras.models.Sequential(
        [
            tf.keras.layers.Dense(16, activation="relu", input_shape=(4,)),
            tf.keras.layers.Dropout(0.2),
            tf.keras.layers.Dense(3),
        ]
    )
    model.compile(
        optimizer="adam", loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"]
    )
    estimator = tf.keras.estimator.model_to_estimator(keras_model=model, model_dir=model_dir)

    def input_fn():
        dataset = tf.data.Dataset.from_tensor_slices(({"dense_input": features}, labels))
        return dataset.shuffle(1000).repeat().batch(32)

    estimator.train(input_fn=input_fn, steps=500)
    print(estimator.evaluate(input_fn=input_fn, steps=10))


if __name__ == "__main__":
    main(sys.argv[1])
