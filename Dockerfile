# The dev stack's image: Airflow 3.3.2 on Python 3.11 with kest's pinned requirements and library.
FROM apache/airflow:3.3.2-python3.11
COPY --chown=airflow:0 requirements.txt constraints.txt pyproject.toml /opt/kest/
COPY --chown=airflow:0 kest_tasks /opt/kest/kest_tasks
# dev/: the gcs override's config and the TLS proxy TensorFlow reaches fake-gcs-server through (needs trustme).
COPY --chown=airflow:0 dev /opt/kest/dev
RUN pip install --no-cache-dir -r /opt/kest/requirements.txt -c /opt/kest/constraints.txt \
 && pip install --no-cache-dir --no-deps /opt/kest \
 && pip install --no-cache-dir trustme -c /opt/kest/constraints.txt
