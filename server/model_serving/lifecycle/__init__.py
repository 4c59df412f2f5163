"""The model lifecycle: versions of a served name (store.py), and the verbs that move traffic between them."""
