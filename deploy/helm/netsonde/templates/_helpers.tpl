{{/*
Names and labels, as the prometheus-community charts spell them, so two
releases (in two namespaces, or side by side) never share a name: every
cluster-scoped object is named from the release.
*/}}

{{/* Chart name, overridable with nameOverride. */}}
{{- define "netsonde.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified name: the release name, with the chart's name appended
unless the release name already contains it ("netsonde" stays "netsonde",
"edge" becomes "edge-netsonde"). 63 characters: a DNS label.
*/}}
{{- define "netsonde.fullname" -}}
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

{{/*
Cluster-scoped objects (ClusterRole, ClusterRoleBinding) live in one
namespace-less space: a release "netsonde" in namespace "a" and another
"netsonde" in "b" would collide on the fullname alone, so theirs carries
the namespace too. The default release (name netsonde in namespace
netsonde) keeps the plain name, as the kustomize base has it.
*/}}
{{- define "netsonde.clusterName" -}}
{{- $full := include "netsonde.fullname" . }}
{{- if eq .Release.Namespace $full }}
{{- $full }}
{{- else }}
{{- printf "%s-%s" .Release.Namespace $full | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "netsonde.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: stable across upgrades (a DaemonSet's selector is immutable). */}}
{{- define "netsonde.selectorLabels" -}}
app.kubernetes.io/name: {{ include "netsonde.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Every object's labels. */}}
{{- define "netsonde.labels" -}}
helm.sh/chart: {{ include "netsonde.chart" . }}
{{ include "netsonde.selectorLabels" . }}
app.kubernetes.io/version: {{ include "netsonde.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: netsonde
{{- end }}

{{- define "netsonde.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "netsonde.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* image.tag, or the chart's appVersion when empty: a chart version pins an agent version. */}}
{{- define "netsonde.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* repository:tag, or repository@digest when a digest is given (a digest wins: it is what runs). */}}
{{- define "netsonde.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "netsonde.imageTag" .) }}
{{- end }}
{{- end }}

{{/*
Whether to render a monitoring.coreos.com object. $kind is ServiceMonitor
or PrometheusRule, $enabled the value ("auto", true or false; the schema
admits nothing else). auto: only when the API server serves the kind.
true: always, but when the API is absent the install fails here with a
message naming the CRD (Helm would otherwise fail later with "no matches
for kind", which does not say what to install) unless trustCRDsExist says
that the rendering is offline (helm template in a GitOps pipeline, where
.Capabilities is Helm's built-in list, not the cluster's).
*/}}
{{- define "netsonde.monitoringEnabled" -}}
{{- $ctx := index . 0 }}{{ $kind := index . 1 }}{{ $enabled := index . 2 }}{{ $value := index . 3 }}
{{- $has := $ctx.Capabilities.APIVersions.Has (printf "monitoring.coreos.com/v1/%s" $kind) }}
{{- if eq (toString $enabled) "auto" }}
{{- if $has }}true{{ end }}
{{- else if eq (toString $enabled) "true" }}
{{- if not (or $has $ctx.Values.trustCRDsExist) }}
{{- fail (printf "%s=true, but this cluster does not serve monitoring.coreos.com/v1 %s: install the Prometheus Operator's CRDs first (e.g. the kube-prometheus-stack or prometheus-operator-crds chart), set %s=auto to skip it where the Operator is absent, or set trustCRDsExist=true when rendering offline" $value $kind $value) }}
{{- end }}true
{{- end }}
{{- end }}

{{/*
The job label of netsonde's targets, as the rules select them: the
Operator names the job after the Service unless told otherwise, so it is
this release's fullname.
*/}}
{{- define "netsonde.jobSelector" -}}
{{- .Values.prometheusRule.jobSelector | default (printf "job=%q" (include "netsonde.fullname" .)) }}
{{- end }}
