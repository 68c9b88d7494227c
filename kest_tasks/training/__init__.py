"""Training: the build stage (Keras model from the builder registry or user code), Estimators (model_to_estimator,
premade, model_fn), the native model.fit trainer, warm start, and the train stage."""
