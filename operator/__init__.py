"""kubeinfer's control plane: the kopf operator that turns InferenceEndpoints into
Deployments, Services and ConfigMaps, the CRD generator, and the offline ``validate``
and ``render`` commands. Imported as ``kubeinfer_operator``; never imports torch."""
