"""The model lifecycle: versions of a served name (store.py), the verbs that move traffic between them, and evals that compare two."""
