"""kubeinfer's core: the InferenceEndpoint contract that the operator, the gateway and the
model servers share (the service catalog, errors, manifests, secret naming, model-id
resolution, the resource's facts and status vocabulary, configuration, the CRD and its
offline validation) and the ``kubeinfer`` command line.

Nothing here imports ``kubeinfer_operator`` or ``model_server``; both build on this
package. The CLI is the one exception, and it imports a role only when its subcommand
runs.
"""

__version__ = "0.1.0"
