"""An example custom model_fn for kest (trainer.kind: model_fn, trainer.model_fn: custom_model_fn:model_fn,
model.code_dir: ../examples).

kest calls it as an Estimator model_fn with params = {"schema": <schema.json as a dict>, "learning_rate": …,
"weight_feature": …, **model.params}. Features arrive under their TensorFlow-safe names (the schema's `tf_name`:
`sepal length (cm)` becomes `sepal_length_cm`), numbers as float32 with missing values already filled, strings as
text; labels are class indices (classification) or standardised floats (regression: kest trains on
(label - mean) / std and returns predictions in the label's units). With trainer.class_weight, each example's
weight is the feature named by params["weight_feature"] (in training and evaluation). Return predictions with
"logits" (classification) or "predictions" (regression) so kest's export can add probabilities and class names.
"""

import tensorflow as tf


def model_fn(features, labels, mode, params):
    schema = params["schema"]
    weights = features.pop(params["weight_feature"], 1.0) if params.get("weight_feature") else 1.0
    numeric = [f for f in schema["features"] if f["type"] != "string"]
    columns = [(tf.reshape(features[f["tf_name"]], [-1, 1]) - (f["mean"] or 0.0)) / (f["std"] or 1.0) for f in numeric]
    hidden = tf.concat(columns, axis=1)
    for width in params.get("hidden_units", [32, 16]):
        hidden = tf.compat.v1.layers.dense(hidden, width, activation=tf.nn.relu)
    classes = schema["label"]["classes"]
    if classes:
        logits = tf.compat.v1.layers.dense(hidden, len(classes))
        predictions = {"logits": logits, "class_ids": tf.argmax(logits, axis=-1)}
    else:
        output = tf.compat.v1.layers.dense(hidden, 1)
        predictions = {"predictions": tf.reshape(output, [-1])}
    if mode == tf.estimator.ModeKeys.PREDICT:
        return tf.estimator.EstimatorSpec(mode, predictions=predictions)
    if classes:
        loss = tf.compat.v1.losses.sparse_softmax_cross_entropy(labels, logits, weights=weights)
        metrics = {"accuracy": tf.compat.v1.metrics.accuracy(labels, predictions["class_ids"])}
    else:
        loss = tf.compat.v1.losses.mean_squared_error(labels, predictions["predictions"], weights=weights)
        metrics = {"mae": tf.compat.v1.metrics.mean_absolute_error(labels, predictions["predictions"])}
    optimizer = tf.compat.v1.train.AdamOptimizer(params["learning_rate"])
    train_op = optimizer.minimize(loss, global_step=tf.compat.v1.train.get_global_step())
    return tf.estimator.EstimatorSpec(mode, loss=loss, train_op=train_op, eval_metric_ops=metrics)
