"""kubeinfer's data plane: backends (local models and provider adapters), the _inference
HTTP API, the gateway that fronts every endpoint and local mode. It builds on the
``kubeinfer`` core and never imports the operator."""
