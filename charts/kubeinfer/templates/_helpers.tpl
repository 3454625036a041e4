{{/*
Names, labels and images shared by every template of the chart.
*/}}

{{- define "kubeinfer.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kubeinfer.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "kubeinfer.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kubeinfer.labels" -}}
helm.sh/chart: {{ include "kubeinfer.chart" . }}
app.kubernetes.io/name: {{ include "kubeinfer.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kubeinfer
{{- end }}

{{/* Selector labels of one component: include with (dict "ctx" $ "component" "operator"). */}}
{{- define "kubeinfer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubeinfer.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "kubeinfer.componentLabels" -}}
{{ include "kubeinfer.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "kubeinfer.operatorName" -}}
{{- printf "%s-operator" (include "kubeinfer.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kubeinfer.gatewayName" -}}
{{- printf "%s-gateway" (include "kubeinfer.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The deployment policy's ValidatingAdmissionPolicy, its binding and its ConfigMap. */}}
{{- define "kubeinfer.deploymentPolicyName" -}}
{{- printf "%s-deployment-policy" (include "kubeinfer.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* An image reference from {repository, tag}; an empty tag means the appVersion, a tag
starting with "@" is a digest. */}}
{{- define "kubeinfer.imageRef" -}}
{{- $tag := default .ctx.Chart.AppVersion .image.tag }}
{{- if hasPrefix "@" $tag }}
{{- printf "%s%s" .image.repository $tag }}
{{- else }}
{{- printf "%s:%s" .image.repository $tag }}
{{- end }}
{{- end }}

{{- define "kubeinfer.image" -}}
{{- include "kubeinfer.imageRef" (dict "ctx" . "image" .Values.image) }}
{{- end }}

{{- define "kubeinfer.proxyImage" -}}
{{- if .Values.endpoints.proxyImage.repository }}
{{- include "kubeinfer.imageRef" (dict "ctx" . "image" .Values.endpoints.proxyImage) }}
{{- else }}
{{- include "kubeinfer.imageRef" (dict "ctx" . "image" (dict "repository" .Values.image.repository "tag" (default .Values.image.tag .Values.endpoints.proxyImage.tag))) }}
{{- end }}
{{- end }}

{{/* Peering is on for more than one operator replica, or when asked for. */}}
{{- define "kubeinfer.peering" -}}
{{- if or .Values.operator.peering.enabled (gt (int .Values.operator.replicas) 1) }}
{{- default (include "kubeinfer.fullname" .) .Values.operator.peering.name }}
{{- end }}
{{- end }}

{{/* The namespace where the gateway creates endpoints and their Secrets. */}}
{{- define "kubeinfer.endpointNamespace" -}}
{{- default .Release.Namespace .Values.gateway.endpointNamespace }}
{{- end }}

{{/* checkov findings that are deliberate, one annotation per check with its reason.
checkov renders the chart into the namespace "default"; an install names its own. */}}
{{- define "kubeinfer.checkovNamespaceSkip" -}}
checkov.io/skip1: CKV_K8S_21=checkov renders into the default namespace; every object is placed in the release namespace given at install
{{- end }}

{{- define "kubeinfer.checkovSkips" -}}
{{ include "kubeinfer.checkovNamespaceSkip" . }}
checkov.io/skip2: CKV_K8S_43=tags are pinned to the chart's appVersion; give image.tag as @sha256:<digest> to pin by digest
checkov.io/skip3: CKV_K8S_15=release tags are immutable, so IfNotPresent is safe and spares the registry; image.pullPolicy sets Always
checkov.io/skip4: CKV_K8S_38=the operator and the gateway call the Kubernetes API with this token, which is their whole job
{{- if not .Values.networkPolicy.enabled }}
checkov.io/skip5: CKV2_K8S_6=setting networkPolicy.enabled adds NetworkPolicies; off by default as not every cluster's CNI enforces them
{{- end }}
{{- end }}
