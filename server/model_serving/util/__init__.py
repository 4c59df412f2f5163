"""Small helpers with no knowledge of models: path confinement and atomic output, Jinja rendering."""
