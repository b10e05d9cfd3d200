"""The platform's pipelines, laid out by role (tests/unit/test_import_graph.py holds the layers).

model.py, features.py   the model every registered version loads by name
                        (flows.model.TripDurationRegressor), logged with each version
logic/                  model and data logic: trips, months, signature, gate, monitoring,
                        predictions, plots, results and reports; no Prefect, no adapters
resources/              adapters to the outside: S3, the data store, TLC files, the model
                        registry, Prefect deployments
steps/                  Prefect tasks the pipelines share: ingest, scoring, tracking,
                        reporting, the retry policy
pipelines/              the flows, one per file, each named as its deployment (prefect.yaml)
cli/                    the command line behind the make verbs
names.py, errors.py, settings.py   names that cross processes, domain errors, every setting
"""
