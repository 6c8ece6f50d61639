{{/* Chart name, overridable. */}}
{{- define "hean.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: <release>-<chart> unless the release name already contains it. */}}
{{- define "hean.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "hean.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels of the operator pod (immutable: keep them minimal). */}}
{{- define "hean.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hean.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* Labels on every object: the user's commonLabels, then the standard labels
     (which win on a clash, so the selector always matches). */}}
{{- define "hean.labelsDict" -}}
{{- $std := dict
      "helm.sh/chart" (include "hean.chart" .)
      "app.kubernetes.io/name" (include "hean.name" .)
      "app.kubernetes.io/instance" .Release.Name
      "app.kubernetes.io/component" "operator"
      "app.kubernetes.io/version" (.Chart.AppVersion | toString)
      "app.kubernetes.io/managed-by" .Release.Service
      "app.kubernetes.io/part-of" "hean" -}}
{{- toYaml (merge $std (deepCopy (.Values.commonLabels | default dict))) -}}
{{- end -}}

{{- define "hean.labels" -}}
{{- include "hean.labelsDict" . -}}
{{- end -}}

{{/* Labels of the operator pod template: labels + podLabels (labels win). */}}
{{- define "hean.podLabels" -}}
{{- $labels := include "hean.labelsDict" . | fromYaml -}}
{{- toYaml (merge $labels (deepCopy (.Values.podLabels | default dict))) -}}
{{- end -}}

{{- define "hean.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "hean.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Image of the operator and of the workers. */}}
{{- define "hean.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag | toString) -}}
{{- end -}}
