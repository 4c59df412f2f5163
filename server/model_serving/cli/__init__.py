"""The `model-serving` command line (entry point: `model_serving.cli.main:main`)."""
