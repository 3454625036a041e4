"""The _inference HTTP API: the app, Elasticsearch's JSON shapes, errors at the edge."""
